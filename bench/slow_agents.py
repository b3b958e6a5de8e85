"""``python -m bench --scenario slow-agents``: the service against agents that take their time.

Stand-in peers answer get-namespaces after a set latency (0.2 s, 1 s). C client
threads (16, 64, 256) each loop ``GET /namespaces`` over 24 agents on one
keep-alive connection; client i asks with cluster_id i, so no two clients share
a single flight and every request is one RPC. The service runs on its
**default** settings (3 workers x 256 threads); the anchor is the bare one-RPC
Flask app (``bench/apps/bare_rpc.py``, 2 x 16 threads) against the same peers,
in the same run. Per row: req/s, its share of the ideal C / latency (Little's
law), p50, p99, statuses, RSS per worker. During the C = 256 rows a client
polls ``/health`` (a new connection per probe, as a kubelet does).

The ``hung-agents`` row: 200 clients ask agents that never answer (and wait about
1 s, jittered, after a 503 or 504: clients in a hurry despite ``Retry-After``), while 16 clients use
healthy 0.2 s agents and one polls ``/health``. The row sets WEBSOCKET_TIMEOUT=5
so that the first timeouts (which open the breakers) fall inside the row.

The attack rows, on the service alone and on its default settings (so
``WEBSOCKET_TIMEOUT`` is 30 s): the same 16 healthy clients and ``/health`` poller,
while hostile clients hold connections (``bench/attacks.py``): 1,000 that pipeline
``/health`` and never read (``slow-readers``), 1,000 that send 400 KB of headers
that never end (``large-headers``), and 4,000 idle ones (``idle-flood``, beyond the
3 x 1,000 ``worker_connections``), each reopened when the server closes it (at most
200 a second; the slow readers are not reopened). Per row: ``/health`` p50/p99/max,
the peak RSS per worker, the healthy clients' share of their ideal. The healthy
clients retry a request once
when the server closed their kept-alive connection (an idle one is the first to go
in a flood), as HTTP client libraries do. Smoke mode: 300 slow readers and 300
large-header senders.

The only setting changed from the defaults for every row: the per-key rate
limit is raised (the default 60/min would answer 429 to a benchmark's one key).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import resource
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench import attacks, procs
from bench.broker import BrokerEnv, RunNames, delete_all

ROOT = Path(__file__).resolve().parent.parent
API = "/api/v3.0/cluster"
API_KEY = "demo-key"
AGENTS = 24
HUNG_AGENTS = 8
CLIENT_COUNTS = (16, 64, 256)
LATENCIES = (0.2, 1.0)
TARGET_SHARE = 0.95
HUNG_HEALTHY_SHARE = 0.9
HEALTH_P99_MS = 100
HEALTH_MAX_MS = 500
RSS_TARGET_MB = 150
# Connections per attack row: full, smoke.
ATTACK_COUNTS = {"slow-readers": (1000, 300), "large-headers": (1000, 300),
                 "idle-flood": (4000, 4000)}
ATTACKS = {"slow-readers": attacks.SlowReaders, "large-headers": attacks.LargeHeaders,
           "idle-flood": attacks.IdleFlood}


@dataclass
class Tally:
    """What a set of client threads saw."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: int, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.statuses[status] = self.statuses.get(status, 0) + 1

    @property
    def count(self) -> int:
        return len(self.latencies)

    def percentile(self, fraction: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def non_200(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200)


def _get(conn: http.client.HTTPConnection | None, port: int, path: str,
         headers: dict[str, str], timeout: float) -> tuple[int, dict[str, str],
                                                           http.client.HTTPConnection | None]:
    """One GET on a kept-alive connection (opened when None); status 0 on a broken one."""
    try:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        reply_headers = {k.lower(): v for k, v in response.getheaders()}
        if reply_headers.get("connection", "").lower() == "close":
            conn.close()
            conn = None
        return response.status, reply_headers, conn
    except (OSError, http.client.HTTPException):
        if conn is not None:
            conn.close()
        return 0, {}, None


def run_clients(count: int, port: int, paths: Callable[[int, int], str], stop: threading.Event,
                tally: Tally, *, pause_after_failure: float = 0.0, timeout: float = 60.0,
                window: tuple[float, float] | None = None,
                retry_dropped: bool = False) -> list[threading.Thread]:
    """Start ``count`` closed-loop clients; request n of client i asks ``paths(i, n)``.

    ``retry_dropped``: a request whose kept-alive connection fails is sent once more on
    a new one (what HTTP client libraries do for an idempotent request)."""
    headers = {"X-API-Key": API_KEY}

    def client(i: int) -> None:
        conn: http.client.HTTPConnection | None = None
        n = 0
        while not stop.is_set():
            started = time.monotonic()
            reused = conn is not None
            status, reply_headers, conn = _get(conn, port, paths(i, n), headers, timeout)
            if status == 0 and reused and retry_dropped:
                status, reply_headers, conn = _get(None, port, paths(i, n), headers, timeout)
            ended = time.monotonic()
            n += 1
            # Completions inside the window: an unbiased rate in a steady state (counting
            # only requests that also started inside it would lose one per client per edge).
            if window is None or window[0] <= ended <= window[1]:
                tally.add(status, ended - started)
            if status in (503, 504) and pause_after_failure:
                # Jittered, as retry policies are (and as docs/operations.md asks of
                # clients): clients that all got their 504 at the same moment would
                # otherwise come back in lock step.
                stop.wait(random.uniform(0.5, 1.5) * pause_after_failure)  # nosec B311
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def poll_health(port: int, stop: threading.Event, tally: Tally,
                interval: float = 0.05) -> threading.Thread:
    """A kubelet-like probe: a new connection per GET /health."""
    def probe() -> None:
        while not stop.is_set():
            started = time.monotonic()
            status, _, conn = _get(None, port, f"{API}/health", {}, 10.0)
            tally.add(status, time.monotonic() - started)
            if conn is not None:
                conn.close()
            stop.wait(interval)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    return thread


@dataclass
class Target:
    """One app under test: how to start it and what to ask it."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready_path: str
    path: str  # with {agent} and {cluster}
    service: bool


class Scenario:
    """Starts the peers once, then each app per row group, and measures the rows."""

    def __init__(self, duration: float, warmup: float, smoke: bool, log: Callable[[str], None],
                 log_dir: Path) -> None:
        self.duration = duration
        self.warmup = warmup
        self.smoke = smoke
        self.log = log
        self.log_dir = log_dir
        self.broker = BrokerEnv.from_environ()
        self.names = RunNames(prefix=f"bench-slow-{os.getpid()}-")
        self.rows: list[dict[str, Any]] = []

    def targets(self, port: int, websocket_timeout: str | None = None) -> list[Target]:
        base = {**os.environ, **self.broker.as_env(), "PYTHONUNBUFFERED": "1",
                "HOST": "127.0.0.1", "PORT": str(port)}
        for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS", "MAX_INFLIGHT_RPCS",
                     "MAX_INFLIGHT_PER_AGENT", "WEBSOCKET_TIMEOUT"):
            base.pop(name, None)
        metrics_dir = str(self.log_dir / f"prom-{port}")
        service_env = {**base, **self.names.service_env(), "DEBUG": "false",
                       "LOG_LEVEL": "INFO", "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000000",
                       "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        if websocket_timeout:
            service_env["WEBSOCKET_TIMEOUT"] = websocket_timeout
        bare_env = {**base, "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "16",
                    "BENCH_RPC_QUEUE": self.names.service_env()["NAMESPACE_REQUEST_QUEUE"],
                    "BENCH_RPC_TIMEOUT": websocket_timeout or "30"}
        query = "agent_id={agent}&cluster_id={cluster}"
        return [
            Target("service", [sys.executable, "-m", "gunicorn", "-c",
                               str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
                   service_env, f"{API}/ready", f"{API}/namespaces?{query}", True),
            Target("bare-rpc", [sys.executable, "-m", "gunicorn", "-c",
                                str(ROOT / "bench/apps/gunicorn_conf.py"),
                                "bench.apps.bare_rpc:app"],
                   bare_env, "/", f"/namespaces?{query}", False),
        ]

    def run(self, only: str = "all") -> list[dict[str, Any]]:
        clients = (16, 64) if self.smoke else CLIENT_COUNTS
        latencies = (0.2,) if self.smoke else LATENCIES
        try:
            with procs.ProcessGroup(self.log_dir) as group:
                peers = self._start_peers(group)
                for index in range(2 if only == "all" else 0):
                    port = procs.free_port()
                    target = self.targets(port)[index]
                    with procs.ProcessGroup(self.log_dir) as app_group:
                        server = self._start(app_group, target, port, peers)
                        for latency in latencies:
                            for count in clients:
                                self.rows.append(self._slow_row(target, port, server, latency,
                                                                count))
                for index in range(2 if only in ("all", "hung") else 0):
                    port = procs.free_port()
                    target = self.targets(port, websocket_timeout="5")[index]
                    with procs.ProcessGroup(self.log_dir) as app_group:
                        server = self._start(app_group, target, port, peers)
                        self.rows.append(self._hung_row(target, port, server))
                for name in ATTACKS:  # a fresh service per row: one attack's debris is not
                    port = procs.free_port()  # the next one's
                    target = self.targets(port)[0]
                    with procs.ProcessGroup(self.log_dir) as app_group:
                        server = self._start(app_group, target, port, peers)
                        self.rows.append(self._attack_row(target, port, server, name))
        finally:
            delete_all(self.broker, self.names.queues(), self.names.exchanges())
        return self.rows

    def _start_peers(self, group: procs.ProcessGroup) -> list[procs.Child]:
        env = {**os.environ, **self.broker.as_env(), **self.names.service_env(),
               "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "devpeers", "--agents", "1"]
        return [group.start("slow-agents-devpeers", argv, env, cwd=ROOT)]

    def _start(self, group: procs.ProcessGroup, target: Target, port: int,
               peers: list[procs.Child]) -> procs.Child:
        server = group.start(f"slow-agents-{target.name}-{port}", target.argv, target.env,
                             cwd=ROOT)
        deadline = time.monotonic() + 40
        procs.wait_http_ok(server, f"http://127.0.0.1:{port}{target.ready_path}", deadline,
                           successes=3 if target.service else 1, also=peers)
        probe = target.path.format(agent="slow-10-warm", cluster=1)
        procs.wait_http_ok(server, f"http://127.0.0.1:{port}{probe}", deadline,
                           headers={"X-API-Key": API_KEY}, also=peers)
        return server

    def _slow_row(self, target: Target, port: int, server: procs.Child, latency: float,
                  count: int) -> dict[str, Any]:
        ms = int(latency * 1000)

        def path(i: int, n: int) -> str:
            return target.path.format(agent=f"slow-{ms}-a{(i + n) % AGENTS + 1}", cluster=i)

        self.log(f"  {target.name}: {count} clients, agents answer after {latency:g} s")
        stop, tally, health = threading.Event(), Tally(), Tally()
        started = time.monotonic() + self.warmup
        window = (started, started + self.duration)
        threads = run_clients(count, port, path, stop, tally, window=window)
        prober = poll_health(port, stop, health) if count == max(CLIENT_COUNTS) else None
        time.sleep(self.warmup + self.duration)  # the measured window itself
        stop.set()
        _join_all(threads + ([prober] if prober else []), latency + 15)
        ideal = count / latency
        row = {"scenario": "slow-agents", "app": target.name, "latency_s": latency,
               "clients": count, "rps": round(tally.count / self.duration, 1),
               "ideal_rps": round(ideal, 1),
               "share_of_ideal": round(tally.count / self.duration / ideal, 3),
               "p50_ms": _ms(tally.percentile(0.5)), "p99_ms": _ms(tally.percentile(0.99)),
               "statuses": tally.statuses, "non_200": tally.non_200(),
               "rss_mb": procs.workers_rss_mb(server.pid)}
        if prober:
            row["health"] = {"probes": health.count, "p50_ms": _ms(health.percentile(0.5)),
                             "p99_ms": _ms(health.percentile(0.99)),
                             "statuses": health.statuses}
        return row

    def _hung_row(self, target: Target, port: int, server: procs.Child) -> dict[str, Any]:
        self.log(f"  {target.name}: 200 clients on hung agents, 16 on 0.2 s agents")

        def hung_path(i: int, n: int) -> str:
            return target.path.format(agent=f"fault-silent-h{i % HUNG_AGENTS}", cluster=i)

        def healthy_path(i: int, n: int) -> str:
            return target.path.format(agent=f"slow-200-a{(i + n) % AGENTS + 1}", cluster=i)

        stop, hung, healthy, health = threading.Event(), Tally(), Tally(), Tally()
        duration = max(self.duration, 12.0)
        window = (time.monotonic(), time.monotonic() + duration)
        threads = run_clients(16, port, healthy_path, stop, healthy, window=window)
        threads += run_clients(200, port, hung_path, stop, hung, pause_after_failure=1.0,
                               timeout=10.0)
        threads.append(poll_health(port, stop, health))
        time.sleep(duration)  # the measured window itself
        stop.set()
        _join_all(threads, 20)
        fast = sorted(s for s in hung.latencies if s < 1.0)
        ideal = 16 / 0.2
        return {"scenario": "hung-agents", "app": target.name, "latency_s": 0.2,
                "clients": 16, "hung_clients": 200,
                "rps": round(healthy.count / duration, 1), "ideal_rps": ideal,
                "share_of_ideal": round(healthy.count / duration / ideal, 3),
                "p50_ms": _ms(healthy.percentile(0.5)), "p99_ms": _ms(healthy.percentile(0.99)),
                "statuses": healthy.statuses, "non_200": healthy.non_200(),
                "hung_statuses": hung.statuses,
                "hung_fast_p99_ms": _ms(fast[min(len(fast) - 1, int(0.99 * len(fast)))]
                                        if fast else None),
                "hung_fast_count": len(fast),
                "health": _health(health), "rss_mb": procs.workers_rss_mb(server.pid)}

    def _attack_row(self, target: Target, port: int, server: procs.Child,
                    name: str) -> dict[str, Any]:
        count = ATTACK_COUNTS[name][1 if self.smoke else 0]
        self.log(f"  {target.name}: 16 clients on 0.2 s agents, {count} x {name}")

        def healthy_path(i: int, n: int) -> str:
            return target.path.format(agent=f"slow-200-a{(i + n) % AGENTS + 1}", cluster=i)

        stop, healthy, health = threading.Event(), Tally(), Tally()
        attack = ATTACKS[name](port, count).start()
        rss = procs.RssSampler(server.pid, interval=0.5).start()
        duration = max(self.duration, 12.0)
        window = (time.monotonic(), time.monotonic() + duration)
        threads = run_clients(16, port, healthy_path, stop, healthy, window=window,
                              retry_dropped=True)
        threads.append(poll_health(port, stop, health))
        time.sleep(duration)  # the measured window itself
        stop.set()
        _join_all(threads, 20)
        rss.stop()
        attack.stop()
        ideal = 16 / 0.2
        return {"scenario": f"attack-{name}", "app": target.name, "latency_s": 0.2,
                "clients": 16, "attack": name, "attack_connections": count,
                "attack_closed_by_server": attack.closed_by_server,
                "attack_refused": attack.refused,
                "rps": round(healthy.count / duration, 1), "ideal_rps": ideal,
                "share_of_ideal": round(healthy.count / duration / ideal, 3),
                "p50_ms": _ms(healthy.percentile(0.5)), "p99_ms": _ms(healthy.percentile(0.99)),
                "statuses": healthy.statuses, "non_200": healthy.non_200(),
                "health": _health(health), "rss_mb": rss.peaks()}


def _health(tally: Tally) -> dict[str, Any]:
    return {"probes": tally.count, "p50_ms": _ms(tally.percentile(0.5)),
            "p99_ms": _ms(tally.percentile(0.99)),
            "max_ms": _ms(max(tally.latencies) if tally.latencies else None),
            "statuses": tally.statuses}


def _join_all(threads: list[threading.Thread], seconds: float) -> None:
    """Join every thread within ``seconds`` in all (clients stuck on a hung app are daemons)."""
    deadline = time.monotonic() + seconds
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


# The rows with a throughput target: every C at 1 s; C = 16 and 64 at 0.2 s
# (256 clients of a 0.2 s agent want 1,280 req/s, more than two cores serve).
TARGET_ROWS = {(1.0, 16), (1.0, 64), (1.0, 256), (0.2, 16), (0.2, 64)}


def checks(rows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for the issue's targets, over the service's rows."""
    found: list[tuple[str, str, bool]] = []
    for row in rows:
        if row["app"] != "service":
            continue
        if row["scenario"] == "slow-agents":
            name = f"{row['latency_s']:g} s, C={row['clients']}"
            share, bad = row["share_of_ideal"], row["non_200"]
            if (row["latency_s"], row["clients"]) in TARGET_ROWS:
                found.append((f"{name}: >= {TARGET_SHARE} x ideal, zero non-200",
                              f"{share:.3f} x, {bad} non-200",
                              share >= TARGET_SHARE and bad == 0))
            if "health" in row and row["latency_s"] == 1.0:
                p99 = row["health"]["p99_ms"]
                found.append((f"{name}: /health p99 <= 50 ms", f"{p99} ms",
                              p99 is not None and p99 <= 50))
            rss = max(row["rss_mb"] or [0])
            if row["clients"] == max(CLIENT_COUNTS):
                found.append((f"{name}: RSS/worker <= 150 MB", f"{rss} MB", rss <= 150))
        elif row["scenario"].startswith("attack-"):
            found += _probe_checks(row["attack"], row)
            rss = max(row["rss_mb"] or [0])
            found += [
                (f"{row['attack']}: RSS/worker <= {RSS_TARGET_MB} MB", f"{rss} MB",
                 rss <= RSS_TARGET_MB),
                (f"{row['attack']}: healthy clients >= {HUNG_HEALTHY_SHARE} x ideal",
                 f"{row['share_of_ideal']:.3f} x, {row['non_200']} non-200",
                 row["share_of_ideal"] >= HUNG_HEALTHY_SHARE),
            ]
        else:
            p99 = row["health"]["p99_ms"]
            found += _probe_checks("hung agents", row)[1:]
            hung_ok = set(row["hung_statuses"]) <= {503, 504}
            fast = row["hung_fast_p99_ms"]
            found += [
                ("hung agents: /health p99 <= 100 ms", f"{p99} ms", p99 is not None and p99 <= 100),
                ("hung agents: healthy clients >= 0.9 x ideal, all 200",
                 f"{row['share_of_ideal']:.3f} x, {row['non_200']} non-200",
                 row["share_of_ideal"] >= HUNG_HEALTHY_SHARE and row["non_200"] == 0),
                ("hung agents: only 503/504, fail fast (< 100 ms) once open",
                 f"{row['hung_statuses']}, fast p99 {fast} ms over {row['hung_fast_count']}",
                 hung_ok and fast is not None and fast < 100),
            ]
    return found


def _probe_checks(name: str, row: dict[str, Any]) -> list[tuple[str, str, bool]]:
    health = row["health"]
    p99, top = health["p99_ms"], health.get("max_ms")
    return [(f"{name}: /health p99 <= {HEALTH_P99_MS} ms", f"{p99} ms",
             p99 is not None and p99 <= HEALTH_P99_MS),
            (f"{name}: /health max <= {HEALTH_MAX_MS} ms, all 200",
             f"{top} ms, {health['statuses']}",
             top is not None and top <= HEALTH_MAX_MS and set(health["statuses"]) == {200})]


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = ["| scenario | app | agent latency | clients | req/s | share of C/latency | p50 ms "
             "| p99 ms | statuses | /health p50 / p99 / max ms | RSS/worker MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        statuses = ", ".join(f"{n} x {s}" for s, n in sorted(r["statuses"].items()))
        if r["scenario"] == "hung-agents":
            hung = ", ".join(f"{n} x {s}" for s, n in sorted(r["hung_statuses"].items()))
            statuses += f" (hung clients: {hung}; fast p99 {r['hung_fast_p99_ms']} ms)"
        probes = r.get("health", {})
        health = f"{probes.get('p50_ms')} / {probes.get('p99_ms')} / {probes.get('max_ms')}" \
            if probes else ""
        clients = r["clients"] if r["scenario"] == "slow-agents" else f"{r['clients']} + 200 hung"
        if r["scenario"].startswith("attack-"):
            clients = f"{r['clients']} + {r['attack_connections']} {r['attack']}"
        lines.append(f"| {r['scenario']} | {r['app']} | {r['latency_s']:g} s | {clients} "
                     f"| {r['rps']} | {r['share_of_ideal']:.3f} | {r['p50_ms']} | {r['p99_ms']} "
                     f"| {statuses} | {health} | {r['rss_mb']} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """req/s against clients, service and anchor, one line per agent latency."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slow = [r for r in rows if r["scenario"] == "slow-agents"]
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for latency in sorted({r["latency_s"] for r in slow}):
        for app, style in (("service", "-o"), ("bare-rpc", "--s")):
            points = sorted((r["clients"], r["rps"]) for r in slow
                            if r["app"] == app and r["latency_s"] == latency)
            if points:
                axis.plot(*zip(*points), style, label=f"{app}, agents {latency:g} s")
        ideal = sorted({r["clients"] for r in slow})
        axis.plot(ideal, [c / latency for c in ideal], ":", color="grey", linewidth=1)
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("concurrent clients (keep-alive)")
    axis.set_ylabel("served req/s (dotted: ideal C / latency)")
    axis.set_title("GET /namespaces against slow agents: default service vs bare one-RPC app")
    axis.legend(fontsize=8)
    axis.grid(True, which="both", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(smoke: bool, duration: float | None, warmup: float | None, results_dir: Path,
         log: Callable[[str], None], only: str = "all") -> int:
    """Run the scenario, print the table and the targets, write JSON and the PNG.

    ``only``: ``all``; ``hung`` for the hung-agents and attack rows; ``attacks`` for the
    attack rows alone."""
    socket.setdefaulttimeout(None)
    # The attack rows hold thousands of sockets here and in the service (which inherits it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                    else max(soft, 65536), hard))
    started = time.monotonic()
    scenario = Scenario(duration or (4.0 if smoke else 15.0), warmup or (1.0 if smoke else 3.0),
                        smoke, log, results_dir / "logs")
    rows = scenario.run(only)
    found = checks(rows)
    print(table(rows))
    print("\ntargets (service on its default settings):")
    for name, measured, met in found:
        print(f"  {'MET ' if met else 'MISS'} {name}: {measured}")
    suffix = "-smoke" if smoke else ""
    (results_dir / f"slow-agents{suffix}.json").write_text(json.dumps(
        {"rows": rows, "targets": [{"target": n, "measured": m, "met": ok}
                                   for n, m, ok in found],
         "elapsed_s": round(time.monotonic() - started, 1)}, indent=2) + "\n")
    png = (ROOT / "docs" / "img" / "slow-agents.png") if not smoke else \
        results_dir / "slow-agents-smoke.png"
    if only == "all":
        plot(rows, png)
    plotted = f"; plot {png}" if only == "all" else ""
    print(f"\ntotal {time.monotonic() - started:.0f} s{plotted}")
    return 0
