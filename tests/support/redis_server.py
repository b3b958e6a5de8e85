"""A private redis-server on a free loopback port, that a test may kill and restart.

Tests never touch the shared Redis on 6379 this way: they get their own server,
with no persistence, and stop it at teardown.
"""

from __future__ import annotations

import shutil
import subprocess  # nosec B404 - tests start their own redis-server
from pathlib import Path

import redis

from .service import free_port, wait_for
from .tls_certs import Certs

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    """``redis-server --port N --bind 127.0.0.1 --save '' --appendonly no`` as a subprocess."""

    def __init__(self, workdir: Path, port: int | None = None, tls: Certs | None = None) -> None:
        """With ``tls``, the server speaks TLS only (``--tls-port``), with ``tls``' server
        certificate (for ``localhost``)."""
        self.tls = tls
        self.port = port or free_port()
        self.workdir = workdir
        self.log_path = workdir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.tls is not None:
            return f"rediss://localhost:{self.port}/0"
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, db: int = 0) -> redis.Redis:
        if self.tls is not None:
            return redis.Redis(host="localhost", port=self.port, db=db, socket_timeout=2,
                               socket_connect_timeout=2, ssl=True,
                               ssl_ca_certs=str(self.tls.ca))
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=2,
                           socket_connect_timeout=2)

    def start(self, timeout: float = 10.0) -> "RedisServer":
        """Start on ``self.port`` (the same port on every restart) and wait for PING."""
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.log_path, "ab")
        ports = ["--port", str(self.port)]
        if self.tls is not None:
            ports = ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", str(self.tls.server_cert),
                     "--tls-key-file", str(self.tls.server_key),
                     "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no"]
        self.proc = subprocess.Popen(  # nosec B603 - fixed argv
            [REDIS_SERVER, *ports, "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited: {self.log_path.read_text()}")
            with self.client() as client:
                return bool(client.ping())

        wait_for(answers, timeout, what=f"redis-server on port {self.port}")
        return self

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL (an abrupt outage) and wait until the process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 5 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
