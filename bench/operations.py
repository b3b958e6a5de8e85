"""``python -m bench --scenario operations``: pods, paged pods and logs of a 5,000-pod cluster.

The stand-in peers simulate agents that answer after 0.3 s with a 5,000-pod
cluster (agent ids ``slow-300-pods-5000-c<i>``). C client threads (16, 64)
each loop on one keep-alive connection, **client i always asking its own agent**,
so no two clients share a single flight and every request of the service is
one RPC (its agent's list, several MB of JSON). Rows per app:

- ``pods``: ``GET /pods?agent_id=…`` (the whole list in one body);
- ``pods-paged``: ``GET /pods?agent_id=…&limit=500``, following ``continue``
  until it is null, then again (the service only; each page is a request);
- ``logs``: ``GET /pods/<pod>/logs?agent_id=…&namespace=…&tail_lines=1000``
  (a running pod of a namespace every such agent has);
- ``namespaces``: ``GET /namespaces?agent_id=…`` of the same agents.

The apps: the service (its ``gunicorn.conf.py``) and ``bench/apps/bare_ops.py``
(the same RPC to the same peers, ``json.loads``, the contract's fields,
``json.dumps``), both 1 worker x 16 threads by default (``--workers``,
``--threads``), as in the hot-path comparison. Per row: req/s, p50/p99, the
workers' CPU ms per request, reply bytes, RSS per worker (sampled during the
row: the peak), and the peers' CPU per request (they must not be the limit).
Then the service alone, restarted for each (smoke: one start for both), serves
a 20,000-pod cluster whole and paged (16 clients, smoke 4), and its peak RSS
per worker is read. ``--smoke``: C = 16 only, 0.5 s warm-up and 2 s windows.

Targets (printed, never enforced): service ``pods`` >= 0.8 x bare ``pods`` at
each C; RSS per worker <= 250 MB in every row, the 20,000-pod rows included.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench import procs
from bench.broker import BrokerEnv, RunNames, delete_all

ROOT = Path(__file__).resolve().parent.parent
API = "/api/v3.0/cluster"
API_KEY = "demo-key"
LATENCY_MS = 300
PODS = 5000
BIG_PODS = 20000
PAGE = 500
TAIL_LINES = 1000
LOG_NAMESPACE = "shop"   # an application namespace every agent of these sizes has
CLIENT_COUNTS = (16, 64)
RATIO_TARGET = 0.8
RSS_TARGET_MB = 250.0
KINDS = ("pods", "pods-paged", "logs", "namespaces")


def agent_id(pods: int, client: int, tag: str = "c") -> str:
    """The agent of client ``client``: 0.3 s latency, ``pods`` pods, its own id."""
    return f"slow-{LATENCY_MS}-pods-{pods}-{tag}{client}"


def log_pod(pods: int) -> str:
    """A running pod of ``LOG_NAMESPACE``: the same for every agent of one size."""
    from devpeers import PeerConfig, parse_agent_id
    from devpeers.operations import ClusterStore

    sample = agent_id(pods, 0)
    result = json.loads(ClusterStore(PeerConfig().pods).result(
        "get-pods", sample, parse_agent_id(sample), {"namespace": LOG_NAMESPACE}))
    return str(next(p["name"] for p in result["pods"] if p["status"] == "Running"))


@dataclass
class Tally:
    """What a set of client threads saw inside the measured window."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    sizes: list[int] = field(default_factory=list)
    walks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, seconds: float, size: int) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.sizes.append(size)
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def percentile(self, fraction: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def fetch(conn: http.client.HTTPConnection | None, port: int, path: str,
          timeout: float) -> tuple[int, bytes, http.client.HTTPConnection | None]:
    """One GET on a kept-alive connection (opened when None); status 0 on a broken one."""
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path, headers={"X-API-Key": API_KEY})
        response = conn.getresponse()
        body = response.read()
        if response.will_close:
            conn.close()
            conn = None
        return response.status, body, conn
    except (OSError, http.client.HTTPException):
        if conn is not None:
            conn.close()
        return 0, b"", None


@dataclass
class App:
    """One app under test: how to start it and its paths (``{agent}`` filled per client)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready_path: str
    paths: dict[str, str]
    service: bool


class Scenario:
    """Starts the peers once, each app per row group, and measures the rows."""

    def __init__(self, smoke: bool, duration: float, warmup: float, workers: int,
                 threads: int, log: Callable[[str], None], log_dir: Path) -> None:
        self.smoke = smoke
        self.duration = duration
        self.warmup = warmup
        self.workers = workers
        self.threads = threads
        self.log = log
        self.log_dir = log_dir
        self.broker = BrokerEnv.from_environ()
        self.names = RunNames(prefix=f"bench-ops-{os.getpid()}-")
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.peers: procs.Child | None = None

    def apps(self, port: int, pods: int) -> list[App]:
        base = {**os.environ, **self.broker.as_env(), "PYTHONUNBUFFERED": "1",
                "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": str(self.workers),
                "GUNICORN_THREADS": str(self.threads)}
        queues = self.names.service_env()
        metrics_dir = self.log_dir / f"prom-ops-{port}"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        # The full request path, as in the hot-path comparison: INFO access lines,
        # the limiter on (a limit the run cannot reach), metrics on, a warm auth cache.
        service_env = {**base, **queues, "DEBUG": "false", "LOG_LEVEL": "INFO",
                       "RATE_LIMIT_ENABLED": "true",
                       "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000000", "AUTH_CACHE_TTL": "300",
                       "METRICS_ENABLED": "true", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
                       "USER_SERVICE_URL": "", "WEBSOCKET_TIMEOUT": "10", "AUTH_TIMEOUT": "10"}
        bare_env = {**base, "BENCH_RPC_QUEUE": queues["NAMESPACE_REQUEST_QUEUE"],
                    "BENCH_OPS_QUEUE": queues["OPERATION_REQUEST_QUEUE"],
                    "BENCH_RPC_TIMEOUT": "10"}
        pod = urllib.parse.quote(log_pod(pods))
        logs = f"/pods/{pod}/logs?agent_id={{agent}}&namespace={LOG_NAMESPACE}" \
               f"&tail_lines={TAIL_LINES}"
        shape = ["--workers", str(self.workers), "--threads", str(self.threads),
                 "--bind", f"127.0.0.1:{port}"]
        return [
            App("service", [sys.executable, "-m", "gunicorn", "-c",
                            str(ROOT / "gunicorn.conf.py"), *shape, "wsgi:app"],
                service_env, f"{API}/ready",
                {"pods": f"{API}/pods?agent_id={{agent}}",
                 "pods-paged": f"{API}/pods?agent_id={{agent}}&limit={PAGE}",
                 "logs": API + logs, "namespaces": f"{API}/namespaces?agent_id={{agent}}"},
                True),
            App("bare", [sys.executable, "-m", "gunicorn", "-c",
                         str(ROOT / "bench/apps/gunicorn_conf.py"), *shape,
                         "bench.apps.bare_ops:app"],
                bare_env, "/namespaces?agent_id=demo-agent-1",
                {"pods": "/pods?agent_id={agent}", "logs": logs,
                 "namespaces": "/namespaces?agent_id={agent}"}, False),
        ]

    # ----- the run ------------------------------------------------------------------------

    def run(self) -> list[dict[str, Any]]:
        clients = (16,) if self.smoke else CLIENT_COUNTS
        kinds = KINDS
        try:
            with procs.ProcessGroup(self.log_dir) as group:
                self.peers = self._start_peers(group)
                for index in range(2):
                    port = procs.free_port()
                    app = self.apps(port, PODS)[index]
                    with procs.ProcessGroup(self.log_dir) as app_group:
                        server = self._start(app_group, app, port)
                        problems = self._probe(app, port, PODS)
                        for count in clients:
                            for kind in kinds:
                                if kind not in app.paths:
                                    continue
                                if problems[kind]:
                                    self.notes.append(f"{app.name} {kind}, C={count}: skipped "
                                                      f"({problems[kind]})")
                                    continue
                                self.rows.append(self._row(app, port, server, kind, count,
                                                           PODS))
                # A fresh service for each big row (its RSS is that row's alone); smoke
                # runs both on one, to stay short.
                groups = [("pods", "pods-paged")] if self.smoke else [("pods",), ("pods-paged",)]
                for group_kinds in groups:
                    port = procs.free_port()
                    app = self.apps(port, BIG_PODS)[0]
                    with procs.ProcessGroup(self.log_dir) as app_group:
                        server = self._start(app_group, app, port)
                        problems = self._probe(app, port, BIG_PODS)
                        for kind in group_kinds:
                            if problems[kind]:
                                self.notes.append(f"service {kind} at {BIG_PODS} pods: skipped "
                                                  f"({problems[kind]})")
                                continue
                            self.rows.append(self._row(app, port, server, kind,
                                                       4 if self.smoke else 16, BIG_PODS))
        finally:
            delete_all(self.broker, self.names.queues(), self.names.exchanges())
        return self.rows

    def _start_peers(self, group: procs.ProcessGroup) -> procs.Child:
        env = {**os.environ, **self.broker.as_env(), **self.names.service_env(),
               "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "devpeers", "--agents", "1"]
        return group.start("operations-devpeers", argv, env, cwd=ROOT)

    def _start(self, group: procs.ProcessGroup, app: App, port: int) -> procs.Child:
        server = group.start(f"operations-{app.name}-{port}", app.argv, app.env, cwd=ROOT)
        deadline = time.monotonic() + 40
        assert self.peers is not None
        procs.wait_http_ok(server, f"http://127.0.0.1:{port}{app.ready_path}", deadline,
                           successes=3 if app.service else 1, also=[self.peers])
        procs.wait_http_ok(server, f"http://127.0.0.1:{port}" + app.paths["namespaces"].format(
            agent="slow-10-warm"), deadline, headers={"X-API-Key": API_KEY}, also=[self.peers])
        return server

    def _probe(self, app: App, port: int, pods: int) -> dict[str, str]:
        """Ask each path once (this also builds the clusters in the peers): kind -> problem,
        "" when it answered as expected."""
        problems: dict[str, str] = {}
        for kind, template in app.paths.items():
            status, body, conn = fetch(None, port, template.format(agent=agent_id(pods, 0, "p")),
                                       30.0)
            if conn is not None:
                conn.close()
            problems[kind] = "" if status == 200 else f"answered {status}: {body[:160]!r}"
            if kind == "pods" and status == 200:
                total = json.loads(body).get("total_count")
                if total != pods:
                    problems[kind] = f"total_count {total}, expected {pods}"
        return problems

    def _row(self, app: App, port: int, server: procs.Child, kind: str, count: int,
             pods: int) -> dict[str, Any]:
        self.log(f"  {app.name} {kind}: {count} clients, {pods} pods, agents at "
                 f"{LATENCY_MS} ms")
        template = app.paths[kind]
        tag = "b" if pods == BIG_PODS else "c"
        stop, tally = threading.Event(), Tally()
        start = time.monotonic() + self.warmup
        window = (start, start + self.duration)
        threads = [threading.Thread(target=self._client, daemon=True, args=(
            port, template.format(agent=agent_id(pods, i, tag)), kind == "pods-paged", stop,
            tally, window)) for i in range(count)]
        for thread in threads:
            thread.start()
        workers = procs.worker_pids(server.pid)
        assert self.peers is not None
        time.sleep(max(0.0, start - time.monotonic()))   # the warm-up
        cpu_before = procs.cpu_seconds(workers)
        peer_before = procs.cpu_seconds([self.peers.pid])
        rss = procs.RssSampler(server.pid, interval=0.2).start()
        time.sleep(max(0.0, window[1] - time.monotonic()))   # the measured window
        rss.stop()
        cpu = procs.cpu_seconds(workers) - cpu_before
        peer_cpu = procs.cpu_seconds([self.peers.pid]) - peer_before
        stop.set()
        deadline = time.monotonic() + 30
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        served = len(tally.latencies)
        sizes = sorted(tally.sizes)
        return {
            "app": app.name, "kind": kind, "pods": pods, "clients": count,
            "workers": self.workers, "threads": self.threads,
            "rps": round(served / self.duration, 1),
            "lists_per_s": round(tally.walks / self.duration, 2) if kind == "pods-paged"
            else None,
            "p50_ms": _ms(tally.percentile(0.5)), "p99_ms": _ms(tally.percentile(0.99)),
            "statuses": tally.statuses,
            "non_200": sum(n for s, n in tally.statuses.items() if s != 200),
            "cpu_ms_per_request": round(1000 * cpu / served, 2) if served else None,
            "peer_cpu_ms_per_request": round(1000 * peer_cpu / served, 2) if served else None,
            "reply_bytes": sizes[len(sizes) // 2] if sizes else None,
            "rss_peak_mb": rss.peaks(),
            "rss_after_mb": procs.workers_rss_mb(server.pid),
        }

    @staticmethod
    def _client(port: int, path: str, paged: bool, stop: threading.Event, tally: Tally,
                window: tuple[float, float]) -> None:
        """A closed-loop client; a paged one follows ``continue`` to the end, then again."""
        conn: http.client.HTTPConnection | None = None
        token: str | None = None
        while not stop.is_set():
            asked = path if token is None else \
                f"{path}&continue={urllib.parse.quote(token, safe='')}"
            began = time.monotonic()
            status, body, conn = fetch(conn, port, asked, 60.0)
            ended = time.monotonic()
            inside = window[0] <= ended <= window[1]
            if inside:
                tally.add(status, ended - began, len(body))
            if not paged:
                continue
            token = None
            if status == 200:
                token = json.loads(body).get("continue")
                if token is None and inside:
                    with tally.lock:
                        tally.walks += 1
        if conn is not None:
            conn.close()


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def checks(rows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """(target, measured, met): service pods >= 0.8 x bare pods per C; RSS <= 250 MB."""
    found = []
    by = {(r["app"], r["kind"], r["pods"], r["clients"]): r for r in rows}
    for clients in sorted({r["clients"] for r in rows if r["pods"] == PODS}):
        service = by.get(("service", "pods", PODS, clients))
        bare = by.get(("bare", "pods", PODS, clients))
        name = f"C={clients}: service /pods >= {RATIO_TARGET} x bare /pods"
        if service and bare and bare["rps"]:
            ratio = service["rps"] / bare["rps"]
            found.append((name, f"{ratio:.2f} ({service['rps']} / {bare['rps']} req/s, "
                                f"{service['non_200']} non-200)",
                          ratio >= RATIO_TARGET and service["non_200"] == 0))
        else:
            found.append((name, "n/a (a row is missing)", False))
    service_rows = [r for r in rows if r["app"] == "service"]
    for pods in (PODS, BIG_PODS):
        peaks = [max(r["rss_peak_mb"] or [0.0]) for r in service_rows if r["pods"] == pods]
        name = f"{pods} pods: service RSS/worker <= {RSS_TARGET_MB:g} MB (peak over rows)"
        found.append((name, f"{max(peaks)} MB" if peaks else "n/a (no row)",
                      bool(peaks) and max(peaks) <= RSS_TARGET_MB))
    return found


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| app | endpoint | pods | clients | req/s | lists/s | p50 ms | p99 ms | statuses "
             "| CPU ms/req | peers CPU ms/req | reply bytes | RSS/worker MB (peak) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        statuses = ", ".join(f"{n} x {s}" for s, n in sorted(r["statuses"].items()))
        lines.append(f"| {r['app']} | {r['kind']} | {r['pods']} | {r['clients']} | {r['rps']} "
                     f"| {r['lists_per_s'] if r['lists_per_s'] is not None else ''} "
                     f"| {r['p50_ms']} | {r['p99_ms']} | {statuses} "
                     f"| {r['cpu_ms_per_request']} | {r['peer_cpu_ms_per_request']} "
                     f"| {r['reply_bytes']} | {r['rss_peak_mb']} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """req/s against clients, one line per (app, endpoint), at 5,000 pods."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for app, style in (("service", "-o"), ("bare", "--s")):
        for kind in KINDS:
            points = sorted((r["clients"], r["rps"]) for r in rows
                            if r["app"] == app and r["kind"] == kind and r["pods"] == PODS)
            if points:
                axis.plot(*zip(*points), style, label=f"{app} {kind}")
    axis.set_xscale("log", base=2)
    axis.set_xlabel("concurrent clients (keep-alive), each with its own agent")
    axis.set_ylabel("served req/s (paged: pages/s)")
    axis.set_title(f"{PODS}-pod cluster, agents at {LATENCY_MS / 1000:g} s: service vs bare app")
    axis.legend(fontsize=8)
    axis.grid(True, which="both", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(smoke: bool, duration: float | None, warmup: float | None, workers: int, threads: int,
         results_dir: Path, log: Callable[[str], None]) -> int:
    """Run the scenario, print the table and the targets, write JSON and the PNG."""
    socket.setdefaulttimeout(None)
    started = time.monotonic()
    scenario = Scenario(smoke, duration or (2.0 if smoke else 15.0),
                        warmup or (0.5 if smoke else 3.0), workers, threads, log,
                        results_dir / "logs")
    print(f"mode: {'smoke' if smoke else 'full'}; agents answer after {LATENCY_MS} ms with "
          f"{PODS} pods (RSS rows: {BIG_PODS}); client i always asks its own agent "
          f"({agent_id(PODS, 0)[:-1]}<i>), so no single flight merges requests; "
          f"apps {workers} worker(s) x {threads} threads; {scenario.warmup:g} s warm-up + "
          f"{scenario.duration:g} s per row", flush=True)
    rows = scenario.run()
    found = checks(rows)
    print(table(rows))
    for note in scenario.notes:
        print(f"NOTE {note}")
    print("\ntargets (reported, never enforced):")
    for name, measured, met in found:
        print(f"  {'MET ' if met else 'MISS'} {name}: {measured}")
    suffix = "-smoke" if smoke else ""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"operations{suffix}.json").write_text(json.dumps(
        {"rows": rows, "notes": scenario.notes,
         "targets": [{"target": n, "measured": m, "met": ok} for n, m, ok in found],
         "elapsed_s": round(time.monotonic() - started, 1)}, indent=2) + "\n")
    png = (results_dir / "operations-smoke.png") if smoke else \
        (ROOT / "docs" / "img" / "operations.png")
    plot(rows, png)
    print(f"\ntotal {time.monotonic() - started:.0f} s; plot {png}")
    return 1 if any(r["non_200"] for r in rows) else 0
