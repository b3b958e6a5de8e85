"""Runs one configuration: start its processes, wait, warm up, load, measure, stop."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from bench import procs, spread
from bench.broker import BrokerEnv, RunNames, declare_queue
from bench.configs import API, API_KEY, BenchConfig
from bench.load import Generator, LoadResult, LoadSpec

ROOT = Path(__file__).resolve().parent.parent
METRIC = "cluster_rpc_published_total"
_SAMPLE = re.compile(r"^" + METRIC + r"(\{[^}]*\})?\s+([0-9.eE+-]+)")
_QUEUE_LABEL = re.compile(r'queue="([^"]*)"')


@dataclass(frozen=True)
class Options:
    """Settings shared by every configuration of one run."""

    workers: int
    threads: int
    connections: int
    duration: float
    warmup: float
    agents: int
    rss_requests: int
    repeat: int
    start_timeout: float
    peer_reply_style: str
    log_dir: Path


def rpc_counts(metrics_text: str) -> dict[str, float]:
    """``cluster_rpc_published_total`` per queue label, summed over any other labels."""
    counts: dict[str, float] = {}
    for line in metrics_text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            label = _QUEUE_LABEL.search(match.group(1) or "")
            queue = label.group(1) if label else ""
            counts[queue] = counts.get(queue, 0.0) + float(match.group(2))
    return counts


def scrape_rpcs(port: int) -> dict[str, float] | None:
    """Scrape the service's metrics; None when the counter is not exposed."""
    url = f"http://127.0.0.1:{port}{API}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:  # nosec B310 - loopback
        counts = rpc_counts(response.read().decode("utf-8", "replace"))
    return counts or None


def _missing_service_parts() -> list[str]:
    missing = [name for name in ("wsgi.py", "gunicorn.conf.py") if not (ROOT / name).exists()]
    if importlib.util.find_spec("devpeers") is None:
        missing.append("devpeers")
    return missing


class ConfigRun:
    """One configuration's run; ``execute`` returns its result as a plain dict."""

    def __init__(self, config: BenchConfig, options: Options, generator: Generator,
                 broker: BrokerEnv, names: RunNames, log: Callable[[str], None],
                 label: str = "", sample_spread: bool = False) -> None:
        self.config = config
        self.options = options
        self.generator = generator
        self.broker = broker
        self.names = names
        self.log = log
        self.result: dict[str, Any] = {"name": label or config.name,
                                       "description": config.description,
                                       "workers": options.workers, "threads": options.threads}
        self.sample_spread = sample_spread
        self.server_pid = 0
        self.port = 0
        self.requests_served = 0

    def execute(self) -> dict[str, Any]:
        started = time.monotonic()
        metrics_dir = tempfile.mkdtemp(prefix="bench-prom-")
        stats_file = Path(metrics_dir).with_name(Path(metrics_dir).name + "-peers.json")
        try:
            with procs.ProcessGroup(self.options.log_dir) as group:
                self._run(group, metrics_dir, stats_file)
            self._read_peer_stats(stats_file)
        except Exception as err:  # noqa: BLE001 - one failed configuration must not stop the run
            self.result["error"] = f"{type(err).__name__}: {err}"
        finally:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            stats_file.unlink(missing_ok=True)
        self.result["wall_seconds"] = round(time.monotonic() - started, 1)
        return self.result

    def _run(self, group: procs.ProcessGroup, metrics_dir: str, stats_file: Path) -> None:
        config, opts = self.config, self.options
        if config.service:
            missing = _missing_service_parts()
            if missing:
                raise RuntimeError("service not available yet: missing " + ", ".join(missing))
        deadline = time.monotonic() + opts.start_timeout
        peers = self._start_peers(group, stats_file)
        self.port = procs.free_port()
        server = group.start(f"{config.name}-gunicorn", self._gunicorn_argv(),
                             self._env(metrics_dir), cwd=ROOT)
        self.server_pid = server.pid
        procs.wait_http_ok(server, self._url(config.ready_path), deadline,
                           successes=3 if config.service else 1, also=peers)
        if config.probe_path:
            procs.wait_http_ok(server, self._url(config.probe_path), deadline,
                               headers={"X-API-Key": API_KEY}, also=peers)
            self.requests_served += 1
        self._load(opts.warmup)  # warm-up: caches, connections, imports; not measured
        runs = [self._measure() for _ in range(opts.repeat)]
        self._record(runs)
        if config.name == "namespaces":
            self._top_up_for_rss(max(r["rps"] for r in runs))
        self.result["requests_before_rss"] = self.requests_served
        rss = procs.workers_rss_mb(server.pid)
        self.result["rss_mb"] = rss
        self.result["rss_max_mb"] = max(rss) if rss else None

    def _settled_rpcs(self, timeout: float = 5.0) -> dict[str, float] | None:
        """The RPC counters once requests still queued in gunicorn have finished.

        When the load generator stops, requests it already sent may still be
        waiting for a thread; their RPCs must not land in the next window.
        """
        if not self.config.service:
            return None
        return procs.settled(lambda: scrape_rpcs(self.port), timeout)

    def _start_peers(self, group: procs.ProcessGroup, stats_file: Path) -> list[procs.Child]:
        env = {**os.environ, **self.broker.as_env(), **self.names.service_env(),
               "PYTHONUNBUFFERED": "1"}
        if self.config.peers == "responder":
            declare_queue(self.broker, self.names.echo_queue)
            argv = [sys.executable, "-m", "bench.responder", "--queue", self.names.echo_queue]
            return [group.start(f"{self.config.name}-responder", argv, env, cwd=ROOT)]
        if self.config.peers == "devpeers":
            argv = [sys.executable, "-m", "devpeers",
                    "--agents", str(self.options.agents), "--stats-file", str(stats_file)]
            if self.options.peer_reply_style:
                argv += ["--reply-style", self.options.peer_reply_style]
            return [group.start(f"{self.config.name}-devpeers", argv, env, cwd=ROOT)]
        return []

    def _gunicorn_argv(self) -> list[str]:
        """Workers, threads and the address from the run; everything else, the worker class
        included, from the configuration's own gunicorn config file (the service's
        ``gunicorn.conf.py`` runs its gthread subclass, the bare apps stock gthread)."""
        opts = self.options
        return [sys.executable, "-m", "gunicorn", "-c", str(ROOT / self.config.gunicorn_conf),
                "--workers", str(opts.workers),
                "--threads", str(opts.threads), "--bind", f"127.0.0.1:{self.port}",
                self.config.app]

    def _env(self, metrics_dir: str) -> dict[str, str]:
        opts = self.options
        env = {**os.environ, **self.broker.as_env(), "PYTHONUNBUFFERED": "1",
               "HOST": "127.0.0.1", "PORT": str(self.port),
               "WEB_CONCURRENCY": str(opts.workers), "GUNICORN_THREADS": str(opts.threads)}
        if self.config.peers == "responder":
            env["BENCH_RPC_QUEUE"] = self.names.echo_queue
        elif self.config.peers == "devpeers" and not self.config.service:
            queues = self.names.service_env()
            env["BENCH_RPC_QUEUE"] = queues["NAMESPACE_REQUEST_QUEUE"]
            env["BENCH_OPS_QUEUE"] = queues["OPERATION_REQUEST_QUEUE"]
        if self.config.service:
            env.update(self.names.service_env())
            # The full request path, as in production: INFO access lines (to the
            # process log file) and the per-key limiter on (memory://, a limit
            # far above what the run can reach).
            env.update({"DEBUG": "false", "LOG_LEVEL": "INFO", "RATE_LIMIT_ENABLED": "true",
                        "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000000",
                        "AUTH_CACHE_TTL": self.config.auth_cache_ttl, "METRICS_ENABLED": "true",
                        "PROMETHEUS_MULTIPROC_DIR": metrics_dir, "USER_SERVICE_URL": "",
                        "WEBSOCKET_TIMEOUT": "10", "AUTH_TIMEOUT": "10"})
        return env

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _load(self, seconds: float) -> LoadResult:
        spec = LoadSpec(port=self.port, path=self.config.path,
                        connections=self.options.connections, duration=seconds,
                        spread=self.options.agents if self.config.spread else 0,
                        api_key=API_KEY if self.config.service else "")
        result = self.generator.run(spec)
        self.requests_served += result.requests
        return result

    def _measure(self) -> dict[str, Any]:
        """One measured window, with the RPCs the service published during it."""
        before = self._settled_rpcs()
        workers = procs.worker_pids(self.server_pid)
        cpu_before = procs.cpu_seconds(workers)
        if self.sample_spread:
            with spread.Sampler(self.server_pid, self.port, self.options.connections) as sampler:
                measured = self._load(self.options.duration)
        else:
            measured = self._load(self.options.duration)
        cpu = procs.cpu_seconds(workers) - cpu_before
        after = self._settled_rpcs()
        run: dict[str, Any] = {
            "rps": round(measured.rps, 1), "p50_ms": round(measured.p50_ms, 2),
            "p99_ms": round(measured.p99_ms, 2), "requests": measured.requests,
            "errors": measured.errors, "error_detail": measured.error_detail,
            "seconds": round(measured.seconds, 2),
            # The workers' CPU over the window (requests still queued at its end included).
            "cpu_ms_per_request": round(1000 * cpu / measured.requests, 3)
            if measured.requests else None}
        if self.sample_spread:
            run.update(worst_share=round(sampler.worst_share, 3),
                       worst_counts=sampler.worst_counts, spread_samples=sampler.samples)
        if not self.config.service:
            return run
        if before is None or after is None:
            run["rpcs_per_request"] = None
            run["rpc_note"] = f"{METRIC} not found in /metrics"
            return run
        queues = {v: k.removesuffix("_QUEUE").lower()
                  for k, v in self.names.service_env().items()}
        delta = {queues.get(q, q): after.get(q, 0.0) - before.get(q, 0.0)
                 for q in set(before) | set(after)}
        total = sum(delta.values())
        count = measured.requests
        run["rpcs_published"] = total
        run["rpcs_by_queue"] = {q: round(d / count, 3) for q, d in delta.items() if d and count}
        run["rpcs_per_request"] = round(total / count, 3) if count else None
        return run

    def _record(self, runs: list[dict[str, Any]]) -> None:
        """Report the median window (by req/s); keep every window in ``runs``.

        Each window is a fresh wrk run, so fresh connections: with several workers,
        how they land on the workers is part of what a window measures (and
        ``worst_share`` says how they landed).
        """
        ordered = sorted(runs, key=lambda r: float(r["rps"]))
        median = ordered[(len(ordered) - 1) // 2]
        if len(ordered) % 2 == 0:  # an even count: the mean of the middle two req/s
            upper = ordered[len(ordered) // 2]
            median = dict(median, rps=round((float(median["rps"]) + float(upper["rps"])) / 2, 1))
        self.result.update(median)
        self.result["errors"] = sum(int(r["errors"]) for r in runs)
        if self.sample_spread:
            self.result["worst_share"] = max(float(r["worst_share"]) for r in runs)
            self.result["spread_samples"] = min(int(r["spread_samples"]) for r in runs)
        if len(runs) > 1:
            self.result["runs"] = runs

    def _top_up_for_rss(self, rps: float) -> None:
        """Keep loading until ``rss_requests`` requests went through, then RSS is read."""
        rate = max(rps, 100.0)
        for _ in range(20):
            missing = self.options.rss_requests - self.requests_served
            if missing <= 0:
                return
            seconds = min(120.0, max(1.0, missing / rate * 1.1))
            self.log(f"  {self.config.name}: {missing} more requests before reading RSS "
                     f"(~{seconds:.0f} s)")
            self._load(seconds)

    def _read_peer_stats(self, stats_file: Path) -> None:
        try:
            self.result["peer_stats"] = json.loads(stats_file.read_text())
        except (OSError, ValueError):
            pass
