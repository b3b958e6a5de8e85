"""Run the real service under the real gunicorn.conf.py, on a free loopback port.

Every wait polls with a deadline; every process is stopped at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess  # nosec B404 - tests start our own service
import sys
import time
from pathlib import Path
from typing import Any, Callable

import requests

from bench.procs import settled
from cluster_service.observability.log_writer import LINGER_S

REPO = Path(__file__).resolve().parents[2]
BASE = "/api/v3.0/cluster"
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05,
             what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:  # keep polling; report the last error on timeout
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_error!r})" if last_error else ""))


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, wait up to ``timeout``, then SIGKILL (and reap) if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def json_records(text: str) -> list[dict[str, Any]]:
    """The JSON log lines of a log text; gunicorn's own plain-text lines are skipped."""
    records = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def queue_env(prefix: str) -> dict[str, str]:
    """Queue and exchange names unique to one test, so tests never share queues."""
    return {
        "AUTH_REQUEST_QUEUE": f"{prefix}cluster_auth_requests",
        "AUTH_RESULT_QUEUE": f"{prefix}cluster_auth_results",
        "NAMESPACE_REQUEST_QUEUE": f"{prefix}cluster_namespace_requests",
        "NAMESPACE_RESULT_QUEUE": f"{prefix}cluster_namespace_results",
        "AGENTS_REQUEST_QUEUE": f"{prefix}cluster_agents_requests",
        "AGENTS_RESULT_QUEUE": f"{prefix}cluster_agents_results",
        "OPERATION_REQUEST_QUEUE": f"{prefix}cluster_operation_requests",
        "OPERATION_RESULT_QUEUE": f"{prefix}cluster_operation_results",
        "REPLY_EXCHANGE": f"{prefix}cluster_service.replies",
        "AUTH_EVENTS_EXCHANGE": f"{prefix}cluster_service.auth_events",
    }


class ServiceProcess:
    """One gunicorn master with its workers, started from the repository's own files."""

    def __init__(self, workdir: Path, env: dict[str, str], scheme: str = "http") -> None:
        self.port = int(env.get("PORT") or free_port())
        self.workdir = workdir
        self.scheme = scheme
        self.log_path = workdir / f"gunicorn-{self.port}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")},
            "HOST": "127.0.0.1", "PORT": str(self.port), "DEBUG": "false",
            "LOG_LEVEL": "INFO", "WEB_CONCURRENCY": "2",
            "RATE_LIMIT_ENABLED": "false",
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"metrics-{self.port}"),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.session = requests.Session()

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{BASE}"

    def start(self, ready: bool = True, timeout: float = 20.0) -> "ServiceProcess":
        """Start gunicorn; wait for /health (and /ready when ``ready``)."""
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(  # nosec B603 - fixed argv, our own files
            [GUNICORN, "-c", str(REPO / "gunicorn.conf.py"), "--pythonpath", str(REPO),
             "wsgi:app"], cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        path = "/ready" if ready else "/health"
        wait_for(lambda: self._alive_and_ok(path), timeout, what=f"{path} on port {self.port}")
        if ready:
            # /ready answers per worker: poll until every worker reports its connection up.
            # "Connection: close" makes each poll a new connection, which any worker may accept.
            wait_for(lambda: all(self._alive_and_ok("/ready", close=True) for _ in range(8)),
                     timeout, what="every worker ready")
        return self

    def _alive_and_ok(self, path: str, close: bool = False) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.proc.returncode}:\n{self.logs()}")
        headers = {"Connection": "close"} if close else {}
        return self.get(path, timeout=2, verify=False, headers=headers).status_code == 200

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.session.get(self.base_url + path, **kwargs)

    def worker_pids(self) -> set[int]:
        """The pids of the master's current worker processes."""
        assert self.proc is not None
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],  # nosec
                             capture_output=True, text=True, check=False).stdout
        return {int(pid) for pid in out.split()}

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        self.session.close()
        if self.proc is None:
            return 0
        terminate(self.proc, timeout)
        return self.proc.returncode

    def logs(self, settle: float = 3 * LINGER_S, deadline_s: float = 5.0) -> str:
        """The log so far, once two sizes ``settle`` seconds apart agree (or at the deadline).

        The service writes its lines in batches, up to ``LINGER_S`` after they are
        logged, and an access line only after its response was sent: a line for a
        response the test already holds may still be on its way.
        """
        def size() -> int:
            return self.log_path.stat().st_size if self.log_path.exists() else 0

        settled(size, timeout=deadline_s, interval=settle)
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def json_logs(self) -> list[dict[str, Any]]:
        """The service's JSON log lines, parsed."""
        return json_records(self.logs())
