"""HTTP load generators: wrk (preferred) or a Python keep-alive generator.

Both run for a fixed time with a fixed number of keep-alive connections and
report requests, errors (connection errors, timeouts and any non-2xx status),
p50 and p99. ``choose_generator`` prefers wrk, installs it from Debian's
packages when it is missing and allowed, and falls back to Python otherwise.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import shutil
import subprocess  # nosec B404 - runs wrk and apt-get, fixed argv
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

LUA_SCRIPT = Path(__file__).with_name("wrk_summary.lua")
MARK = "BENCH_JSON "


@dataclass(frozen=True)
class LoadSpec:
    """What to load: ``path`` (+ ``1..spread`` suffix when spread > 0) on 127.0.0.1:port."""

    port: int
    path: str
    connections: int
    duration: float
    spread: int = 0
    api_key: str = ""
    timeout: float = 10.0


@dataclass
class LoadResult:
    """What one load run measured."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    error_detail: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


class Generator(Protocol):
    """A load generator the harness can drive."""

    description: str

    def run(self, spec: LoadSpec) -> LoadResult: ...


class WrkGenerator:
    """wrk with a Lua script that prints p50/p99/requests/errors as JSON."""

    def __init__(self, binary: str, threads: int) -> None:
        self.binary = binary
        self.threads = threads
        version = subprocess.run([binary, "-v"], capture_output=True, text=True,  # nosec B603
                                 timeout=10, check=False).stdout.split("[")[0].strip()
        self.description = f"{version or 'wrk'} ({binary}), {threads} threads"

    def run(self, spec: LoadSpec) -> LoadResult:
        threads = max(1, min(self.threads, spec.connections))
        argv = [self.binary, f"-t{threads}", f"-c{spec.connections}",
                f"-d{max(1, round(spec.duration))}s", f"--timeout={int(spec.timeout)}s",
                "-s", str(LUA_SCRIPT), f"http://127.0.0.1:{spec.port}",
                "--", spec.path, str(spec.spread), spec.api_key]
        done = subprocess.run(argv, capture_output=True, text=True,  # nosec B603
                              timeout=spec.duration + spec.timeout + 30, check=False)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARK)), None)
        if line is None:
            raise RuntimeError(f"wrk failed (exit {done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-500:]}")
        data = json.loads(line[len(MARK):])
        detail = {k: int(data[k]) for k in ("connect", "read", "write", "timeout")}
        detail.update({f"http_{code}": int(n) for code, n in data["statuses"].items()})
        return LoadResult(requests=int(data["requests"]), errors=sum(detail.values()),
                          seconds=data["duration_us"] / 1e6, p50_ms=data["p50_us"] / 1000,
                          p99_ms=data["p99_us"] / 1000, error_detail=detail)


class PythonGenerator:
    """Processes of threads, each thread one keep-alive http.client connection."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.description = (f"python http.client keep-alive generator, "
                            f"{processes} processes")

    def run(self, spec: LoadSpec) -> LoadResult:
        ctx = multiprocessing.get_context("spawn")
        procs = max(1, min(self.processes, spec.connections))
        shares = [spec.connections // procs + (1 if i < spec.connections % procs else 0)
                  for i in range(procs)]
        results = ctx.Queue()
        go = ctx.Event()
        workers = [ctx.Process(target=_python_worker, args=(spec, i, n, go, results),
                               daemon=True) for i, n in enumerate(shares)]
        for proc in workers:
            proc.start()
        try:
            go.set()
            parts = [results.get(timeout=spec.duration + spec.timeout + 30) for _ in workers]
        finally:
            for proc in workers:
                proc.join(5)
                if proc.is_alive():
                    proc.kill()
        latencies = sorted(lat for part in parts for lat in part["latencies"])
        detail = {"socket": sum(int(p["socket"]) for p in parts)}
        for part in parts:
            for code, n in part["statuses"].items():
                detail[f"http_{code}"] = detail.get(f"http_{code}", 0) + n
        return LoadResult(requests=len(latencies), errors=sum(detail.values()),
                          seconds=max(p["seconds"] for p in parts),
                          p50_ms=_percentile(latencies, 50) * 1000,
                          p99_ms=_percentile(latencies, 99) * 1000, error_detail=detail)


def _percentile(sorted_values: list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(len(sorted_values) * pct / 100))
    return sorted_values[index]


def _python_worker(spec: LoadSpec, index: int, connections: int,
                   go: "multiprocessing.synchronize.Event",
                   results: "multiprocessing.Queue[dict[str, object]]") -> None:
    """One generator process: ``connections`` threads until the deadline."""
    go.wait(30)
    deadline = time.monotonic() + spec.duration
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    socket_total = 0
    lock = threading.Lock()
    start = time.monotonic()

    def loop(slot: int) -> None:
        counter = (index * 1000 + slot) * 7919
        headers = {"X-API-Key": spec.api_key} if spec.api_key else {}
        conn = http.client.HTTPConnection("127.0.0.1", spec.port, timeout=spec.timeout)
        nonlocal socket_total
        mine: list[float] = []
        bad: dict[int, int] = {}
        socket_errors = 0
        while time.monotonic() < deadline:
            counter += 1
            path = spec.path + (str(counter % spec.spread + 1) if spec.spread else "")
            begin = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                socket_errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", spec.port, timeout=spec.timeout)
                continue
            mine.append(time.perf_counter() - begin)
            if not 200 <= response.status < 300:
                bad[response.status] = bad.get(response.status, 0) + 1
            if response.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", spec.port, timeout=spec.timeout)
        conn.close()
        with lock:
            latencies.extend(mine)
            socket_total += socket_errors
            for code, n in bad.items():
                statuses[code] = statuses.get(code, 0) + n

    threads = [threading.Thread(target=loop, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put({"latencies": latencies, "seconds": time.monotonic() - start,
                 "socket": socket_total, "statuses": statuses})


def _install_wrk(log: Callable[[str], None], timeout: float) -> str | None:
    """Install wrk from Debian's packages (root only); its path, or None."""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "-q", "--no-install-recommends", "wrk"]
    for steps in ([install], [[apt, "update", "-q"], install]):
        log("wrk not found: trying " + " && ".join(" ".join(s[:3]) for s in steps))
        ok = True
        for argv in steps:
            try:
                done = subprocess.run(argv, env=env, capture_output=True,  # nosec B603
                                      timeout=timeout, check=False)
            except subprocess.TimeoutExpired:
                ok = False
                break
            ok = ok and done.returncode == 0
        found = shutil.which("wrk")
        if ok and found:
            return found
    return None


def choose_generator(kind: str, allow_install: bool, wrk_threads: int,
                     log: Callable[[str], None], install_timeout: float = 300.0) -> Generator:
    """``kind`` is auto, wrk or python. auto: wrk if present or installable, else Python."""
    if kind in ("auto", "wrk"):
        binary = shutil.which("wrk")
        if binary is None and allow_install:
            binary = _install_wrk(log, install_timeout)
        if binary is not None:
            return WrkGenerator(binary, wrk_threads)
        if kind == "wrk":
            raise RuntimeError("wrk is not installed and could not be installed")
        log("wrk unavailable: falling back to the Python load generator")
    return PythonGenerator(processes=2)
