"""A private RabbitMQ node started by a test: its own node name, ports, data dir and config.

The shared broker on 5672 is never touched. The node listens on loopback only:
plain AMQP (for the stand-in peers) and AMQPS with the test's certificates
(client certificates asked for, not required). Starting one takes seconds, so
tests share one per module. It runs ``rabbitmq-server`` from RabbitMQ's own
``bin`` directory (the packaged wrapper in /usr/sbin would switch to the
rabbitmq user), with ``HOME`` in its work dir so the node and the test's
``rabbitmqctl -n`` calls share an Erlang cookie of their own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess  # nosec B404 - tests start their own broker node
import uuid
from pathlib import Path

from .service import free_port, wait_for
from .tls_certs import Certs

_BIN = next((Path(d) for d in ("/usr/lib/rabbitmq/bin",)
             if (Path(d) / "rabbitmq-server").exists()), None)
SERVER = str(_BIN / "rabbitmq-server") if _BIN else shutil.which("rabbitmq-server")
CTL = str(_BIN / "rabbitmqctl") if _BIN else shutil.which("rabbitmqctl")


class RabbitNode:
    """One ``rabbitmq-server`` process; see the module docstring."""

    def __init__(self, workdir: Path, certs: Certs) -> None:
        self.workdir = workdir
        self.name = f"ctest-{uuid.uuid4().hex[:8]}@localhost"
        self.port, self.tls_port, self.dist_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        home = workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(uuid.uuid4().hex.upper())
        cookie.chmod(0o400)
        config = workdir / "rabbitmq.conf"
        config.write_text("\n".join([
            f"listeners.tcp.1 = 127.0.0.1:{self.port}",
            f"listeners.ssl.1 = 127.0.0.1:{self.tls_port}",
            f"ssl_options.cacertfile = {certs.ca}",
            f"ssl_options.certfile = {certs.server_cert}",
            f"ssl_options.keyfile = {certs.server_key}",
            "ssl_options.verify = verify_peer",
            "ssl_options.fail_if_no_peer_cert = false",
            "ssl_options.versions.1 = tlsv1.3",
            "ssl_options.versions.2 = tlsv1.2",
            "log.console = false",
            "log.file.level = warning",
            "",
        ]))
        plugins = workdir / "enabled_plugins"
        plugins.write_text("[].\n")
        self.env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "LANG")},
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(config),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_PID_FILE": str(workdir / "node.pid"),
        }

    def start(self, timeout: float = 90.0) -> "RabbitNode":
        assert SERVER and CTL, "RabbitMQ is not installed"
        log = open(self.workdir / "server.out", "ab")
        self.proc = subprocess.Popen([SERVER], env=self.env, stdout=log,  # nosec B603
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

        def started() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError("rabbitmq-server exited: "
                                     + (self.workdir / "server.out").read_text()[-2000:])
            return self.ctl("await_startup", "--timeout", "5", check=False).returncode == 0

        wait_for(started, timeout, interval=0.5, what=f"RabbitMQ node {self.name}")
        return self

    def ctl(self, *args: str, check: bool = True,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n <this node> args...``."""
        assert CTL is not None
        return subprocess.run([CTL, "-q", "-n", self.name, *args],  # nosec B603
                              env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=check)

    def stop(self) -> None:
        """Stop the node (``rabbitmqctl stop``, then signals) and reap it."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.ctl("stop", check=False, timeout=30)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
