"""Child processes: start, wait for readiness with a deadline, measure, always stop.

Every child runs in a session of its own so that Ctrl-C in the terminal reaches
only the harness, which then stops the children itself: SIGTERM to the child,
then SIGKILL to its process group (gunicorn's workers included) after a deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess  # nosec B404 - the harness starts its own local processes
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Callable, Mapping, Sequence, TypeVar

from cluster_service.observability.metric_batch import FLUSH_EVERY_S

T = TypeVar("T")


class StartError(RuntimeError):
    """A child exited or did not become ready before its deadline."""


@dataclass
class Child:
    """One started process and the file its output goes to."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ProcessGroup:
    """Owns the children of one configuration; stops all of them on exit."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str],
              cwd: Path | None = None) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(  # nosec B603 - fixed argv, no shell
                list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop the children, last started first."""
        while self.children:
            stop(self.children.pop(), timeout)

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()


def stop(child: Child, timeout: float) -> None:
    """SIGTERM the child, wait up to ``timeout``, then SIGKILL its whole process group."""
    if child.running():
        try:
            child.popen.send_signal(signal.SIGTERM)
            child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        # The child leads its own group (start_new_session): this reaches the
        # gunicorn workers it left behind, and nothing else.
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    child.popen.wait(timeout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_status(url: str, headers: Mapping[str, str] | None = None,
                timeout: float = 5.0) -> int:
    """The status code of one GET, or 0 when no HTTP answer came."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec B310
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (OSError, ValueError):
        return 0


def wait_http_ok(child: Child, url: str, deadline: float,
                 headers: Mapping[str, str] | None = None, successes: int = 1,
                 also: Sequence[Child] = ()) -> None:
    """Poll ``url`` until it answers 200 ``successes`` times in a row, or fail.

    Fails at once when ``child`` or any child in ``also`` (its peers) exits.
    """
    in_a_row = 0
    last = 0
    while in_a_row < successes:
        for watched in (child, *also):
            if not watched.running():
                raise StartError(f"{watched.name} exited with {watched.popen.returncode}:\n"
                                 f"{watched.log_tail()}")
        if time.monotonic() > deadline:
            raise StartError(f"{child.name}: {url} not ready in time (last status {last}):\n"
                             f"{child.log_tail()}")
        last = http_status(url, headers, timeout=max(0.1, min(5.0, deadline - time.monotonic())))
        in_a_row = in_a_row + 1 if last == 200 else 0
        if last != 200:
            time.sleep(0.05)  # poll interval, not a wait for readiness


def wait_alive(child: Child, seconds: float) -> None:
    """Fail if ``child`` exits within ``seconds`` (for children with no readiness probe)."""
    try:
        child.popen.wait(seconds)
    except subprocess.TimeoutExpired:
        return
    raise StartError(f"{child.name} exited with {child.popen.returncode}:\n{child.log_tail()}")


def worker_pids(master_pid: int) -> list[int]:
    """The direct children of ``master_pid`` (gunicorn's workers), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == master_pid:
            pids.append(int(entry.name))
    return sorted(pids)


def rss_mb(pid: int) -> float | None:
    """VmRSS of ``pid`` in MiB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def workers_rss_mb(master_pid: int) -> list[float]:
    """RSS of each gunicorn worker of ``master_pid``, in MiB."""
    values = (rss_mb(pid) for pid in worker_pids(master_pid))
    return [round(v, 1) for v in values if v is not None]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used so far (all their threads)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


# Longer than the service's metric flush interval: two equal scrapes this far apart
# mean every worker has written its batched updates.
SETTLE_POLL_S = FLUSH_EVERY_S + 0.1


def settled(read: Callable[[], T], timeout: float = 5.0, interval: float = SETTLE_POLL_S) -> T:
    """``read()`` once two results ``interval`` apart agree (or at the deadline): by
    default the service's counters after requests still queued when a load stopped
    finished (the tests also read its batched log this way)."""
    deadline = time.monotonic() + timeout
    last = read()
    while time.monotonic() < deadline:
        time.sleep(interval)  # poll interval between two reads
        current = read()
        if current == last:
            break
        last = current
    return last


class RssSampler:
    """The peak RSS of each worker of a gunicorn master, sampled every ``interval`` s
    by a thread of its own while the load runs."""

    def __init__(self, master_pid: int, interval: float) -> None:
        self.master_pid = master_pid
        self.interval = interval
        self.peak: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "RssSampler":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in worker_pids(self.master_pid):
                value = rss_mb(pid)
                if value is not None:
                    self.peak[pid] = max(self.peak.get(pid, 0.0), value)
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def peaks(self) -> list[float]:
        """The peak of each worker seen, in MB, by pid."""
        return [round(self.peak[pid], 1) for pid in sorted(self.peak)]
