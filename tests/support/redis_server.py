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

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    """``redis-server --port N --bind 127.0.0.1 --save '' --appendonly no`` as a subprocess."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.log_path = workdir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2,
                           socket_connect_timeout=2)

    def start(self, timeout: float = 10.0) -> "RedisServer":
        """Start on ``self.port`` (the same port on every restart) and wait for PING."""
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(  # nosec B603 - fixed argv
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
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
