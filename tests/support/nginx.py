"""Run a real nginx, in the foreground, with the shipped deploy/nginx/cluster-service.conf.

The shipped server block is used as it is, except for two addresses: the
upstream (gunicorn's test port) and ``listen`` (127.0.0.1 on a free port). The
pid file, logs and temp directories all live in the test's own directory.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess  # nosec B404 - tests start their own nginx
from pathlib import Path

import requests

from .service import REPO, free_port, terminate, wait_for

NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
SHIPPED_CONF = REPO / "deploy" / "nginx" / "cluster-service.conf"


def render_server_conf(upstream_port: int, listen_port: int) -> str:
    """The shipped file with only its upstream address and listen address replaced."""
    text = SHIPPED_CONF.read_text()
    text, upstreams = re.subn(r"(?m)^(\s*server\s+)127\.0\.0\.1:8008;",
                              rf"\g<1>127.0.0.1:{upstream_port};", text)
    text, listens = re.subn(r"(?m)^(\s*listen\s+)80;", rf"\g<1>127.0.0.1:{listen_port};", text)
    assert (upstreams, listens) == (1, 1), "deploy/nginx/cluster-service.conf changed shape"
    return text


class NginxProcess:
    """``nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'`` in front of one upstream port."""

    def __init__(self, workdir: Path, upstream_port: int) -> None:
        if NGINX is None:
            raise RuntimeError("nginx is not installed")
        self.dir = workdir / "nginx"
        self.port = free_port()
        self.upstream_port = upstream_port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        for sub in ("logs", "tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "cluster-service.conf").write_text(
            render_server_conf(self.upstream_port, self.port))
        d = self.dir
        # As root, nginx's workers would switch to "nobody", who cannot enter
        # pytest's private tmp directory: keep them as the current user.
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = d / "nginx.conf"
        conf.write_text(f"""{user}worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log info;
events {{ worker_connections 128; }}
http {{
    default_type application/octet-stream;
    access_log {d}/logs/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {d}/cluster-service.conf;
}}
""")
        return conf

    def start(self, timeout: float = 10.0) -> "NginxProcess":
        assert NGINX is not None
        conf = self.write_config()
        log = open(self.dir / "logs" / "stderr.log", "ab")
        self.proc = subprocess.Popen(  # nosec B603 - fixed argv, our own config
            [NGINX, "-p", str(self.dir), "-e", str(self.dir / "logs" / "error.log"),
             "-c", str(conf), "-g", "daemon off;"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def answers() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited with {self.proc.returncode}:\n{self.logs()}")
            reply = requests.get(f"{self.base_url}/api/v3.0/cluster/health", timeout=2)
            return reply.status_code == 200

        wait_for(answers, timeout, what=f"nginx on port {self.port}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (fast shutdown), then SIGKILL if it lingers."""
        if self.proc is not None:
            terminate(self.proc, timeout)

    def logs(self) -> str:
        parts = []
        for name in ("stderr.log", "error.log"):
            path = self.dir / "logs" / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)
