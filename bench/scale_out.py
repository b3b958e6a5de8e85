"""``python -m bench --scenario scale-out``: what a reply and a key cost as the fleet grows.

For R replicas x W workers (R in 1, 2, 3; W in 2, 4) of the real service, with
stand-in peers that answer on the fixed results queues (as the existing User
and Onboarding Services do), and the fleet-wide auth cache on:

* **req/s** of ``GET /namespaces`` spread over the agents, the load split
  evenly over the replicas (timing: only indicative on a busy machine);
* **broker deliveries per reply**, from the service's own metrics over the
  measured window: every reply delivery to a worker (own, fixed and relayed
  queues: ``cluster_rpc_replies_received_total``) plus forwards the broker
  returned (``dropped{reason="owner_gone"}``), per RPC published. The target
  is <= 2 for every R x W (the broadcast reroute cost ~R x W);
* **auth RPCs for the one key** the load uses, over the whole cell from cold
  (shorter than ``AUTH_CACHE_TTL``, so per TTL). Target: <= 2.

Counts are exact; req/s depends on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import redis

from bench import procs
from bench.broker import BrokerEnv, RunNames, check_broker, delete_all
from bench.configs import AGENT_PREFIX, API, API_KEY
from bench.load import Generator, LoadResult, LoadSpec, choose_generator
from bench.report import write_json

ROOT = Path(__file__).resolve().parent.parent
CELLS = tuple((replicas, workers) for replicas in (1, 2, 3) for workers in (2, 4))
DELIVERY_TARGET = 2.0
AUTH_RPC_TARGET = 2
DEFAULT_AUTH_CACHE_URI = "redis://127.0.0.1:6379/12"


@dataclass(frozen=True)
class ScaleOutOptions:
    """Settings of one scale-out run."""

    threads: int
    connections: int
    duration: float
    warmup: float
    agents: int
    start_timeout: float
    auth_cache_uri: str  # "" = the fleet-wide cache off
    log_dir: Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The scenario's own option (the shared ones come from bench/__main__.py)."""
    parser.add_argument("--auth-cache-uri", default=DEFAULT_AUTH_CACHE_URI,
                        help="scale-out: the Redis for AUTH_CACHE_URI ('' = cache off); "
                             f"default {DEFAULT_AUTH_CACHE_URI}")


def run(options: ScaleOutOptions, generator: Generator, broker: BrokerEnv,
        log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every cell in turn; each cell starts and stops its own processes and queues."""
    uri = options.auth_cache_uri
    if uri and not _redis_answers(uri):
        log(f"scale-out: nothing answers at {uri}; the fleet-wide auth cache is off")
        uri = ""
    results = []
    for replicas, workers in CELLS:
        names = RunNames(prefix=f"bench-{os.getpid()}-so{replicas}x{workers}-")
        log(f"scale-out {replicas} replicas x {workers} workers")
        cell = Cell(replicas, workers, options, uri, generator, broker, names)
        try:
            result = cell.execute()
        finally:
            delete_all(broker, names.queues(), names.exchanges() + [cell.events_exchange])
        results.append(result)
        log(f"  {_line(result)}")
    return results


class Cell:
    """One R x W configuration: peers, R gunicorn masters, load, metrics."""

    def __init__(self, replicas: int, workers: int, options: ScaleOutOptions, uri: str,
                 generator: Generator, broker: BrokerEnv, names: RunNames) -> None:
        self.replicas, self.workers = replicas, workers
        self.options, self.uri = options, uri
        self.generator, self.broker, self.names = generator, broker, names
        self.events_exchange = f"{names.prefix}auth-events"
        self.ports: list[int] = []

    def execute(self) -> dict[str, Any]:
        result: dict[str, Any] = {"replicas": self.replicas, "workers": self.workers,
                                  "auth_cache": bool(self.uri)}
        work = Path(tempfile.mkdtemp(prefix="bench-scale-out-"))
        try:
            with procs.ProcessGroup(self.options.log_dir) as group:
                result.update(self._run(group, work))
        except Exception as err:  # noqa: BLE001 - one failed cell must not stop the run
            result["error"] = f"{type(err).__name__}: {err}"
        return result

    def _run(self, group: procs.ProcessGroup, work: Path) -> dict[str, Any]:
        opts = self.options
        deadline = time.monotonic() + opts.start_timeout
        stats = work / "peers.json"
        env = {**os.environ, **self.broker.as_env(), **self.names.service_env(),
               "PYTHONUNBUFFERED": "1"}
        peers = group.start(f"so{self.replicas}x{self.workers}-devpeers",
                            [sys.executable, "-m", "devpeers",
                             "--agents", str(opts.agents), "--reply-style", "results",
                             "--stats-file", str(stats)], env, cwd=ROOT)
        secret = secrets.token_hex(16)
        servers = []
        for index in range(self.replicas):
            port = procs.free_port()
            self.ports.append(port)
            servers.append(group.start(
                f"so{self.replicas}x{self.workers}-replica{index}",
                [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
                 "wsgi:app"], self._env(port, work / f"prom-{index}", secret), cwd=ROOT))
        for server, port in zip(servers, self.ports):
            procs.wait_http_ok(server, f"http://127.0.0.1:{port}{API}/ready", deadline,
                               successes=3, also=[peers])
        # One request first, so that the key's first validation is not a stampede.
        procs.wait_http_ok(servers[0], self._url(self.ports[0], 1), deadline,
                           headers={"X-API-Key": API_KEY}, also=[peers])
        self._load(opts.warmup)
        before = self._scrape()
        measured = self._load(opts.duration)
        after = self._settled()
        return self._summary(measured, before, after, _peer_auth_requests(stats))

    def _env(self, port: int, metrics_dir: Path, secret: str) -> dict[str, str]:
        metrics_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.broker.as_env(), **self.names.service_env(),
               "PYTHONUNBUFFERED": "1", "HOST": "127.0.0.1", "PORT": str(port),
               "WEB_CONCURRENCY": str(self.workers),
               "GUNICORN_THREADS": str(self.options.threads),
               "DEBUG": "false", "LOG_LEVEL": "WARNING", "RATE_LIMIT_ENABLED": "true",
               "RATE_LIMIT_REQUESTS_PER_MINUTE": "100000000", "AUTH_CACHE_TTL": "300",
               "METRICS_ENABLED": "true", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
               "USER_SERVICE_URL": "", "WEBSOCKET_TIMEOUT": "10", "AUTH_TIMEOUT": "10",
               "AUTH_EVENTS_EXCHANGE": self.events_exchange, "AUTH_CACHE_URI": self.uri,
               "AUTH_CACHE_SECRET": secret if self.uri else ""}
        return env

    def _url(self, port: int, agent: int | None = None) -> str:
        suffix = "" if agent is None else str(agent)
        return f"http://127.0.0.1:{port}{API}/namespaces?agent_id={AGENT_PREFIX}{suffix}"

    def _load(self, seconds: float) -> LoadResult:
        """The same load on every replica at once, the connections split between them."""
        share = max(1, self.options.connections // self.replicas)
        parts: list[LoadResult | BaseException] = [RuntimeError("no result")] * self.replicas

        def one(index: int) -> None:
            spec = LoadSpec(port=self.ports[index],
                            path=f"{API}/namespaces?agent_id={AGENT_PREFIX}",
                            connections=share, duration=seconds, spread=self.options.agents,
                            api_key=API_KEY)
            try:
                parts[index] = self.generator.run(spec)
            except Exception as err:  # noqa: BLE001 - reported below
                parts[index] = err

        threads = [threading.Thread(target=one, args=(i,)) for i in range(self.replicas)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        done = [p for p in parts if isinstance(p, LoadResult)]
        failed = [p for p in parts if not isinstance(p, LoadResult)]
        if failed:
            raise RuntimeError(f"load failed: {failed[0]!r}")
        detail: dict[str, int] = {}
        for part in done:
            for key, value in part.error_detail.items():
                detail[key] = detail.get(key, 0) + value
        return LoadResult(requests=sum(p.requests for p in done),
                          errors=sum(p.errors for p in done),
                          seconds=max(p.seconds for p in done),
                          p50_ms=max(p.p50_ms for p in done), p99_ms=max(p.p99_ms for p in done),
                          error_detail=detail)

    def _scrape(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for port in self.ports:
            url = f"http://127.0.0.1:{port}{API}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:  # nosec B310 - loopback
                for key, value in counters(response.read().decode("utf-8", "replace"),
                                           self.names.service_env()).items():
                    totals[key] = totals.get(key, 0.0) + value
        return totals

    def _settled(self, timeout: float = 5.0) -> dict[str, float]:
        """The counters once requests still queued when the load stopped have finished."""
        return procs.settled(self._scrape, timeout)

    def _summary(self, measured: LoadResult, before: dict[str, float],
                 after: dict[str, float], peer_auth: int | None) -> dict[str, Any]:
        delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in set(before) | set(after)}
        published = delta.get("published", 0.0)
        deliveries = delta.get("received", 0.0) + delta.get("owner_gone", 0.0)
        return {
            "rps": round(measured.rps, 1), "p50_ms": round(measured.p50_ms, 2),
            "p99_ms": round(measured.p99_ms, 2), "requests": measured.requests,
            "errors": measured.errors, "error_detail": measured.error_detail,
            "rpcs_published": published,
            "deliveries_per_reply": round(deliveries / published, 3) if published else None,
            "forwarded": delta.get("direct", 0.0), "broadcast": delta.get("broadcast", 0.0),
            "not_owner": delta.get("not_owner", 0.0), "owner_gone": delta.get("owner_gone", 0.0),
            "saturated_503": delta.get("saturated", 0.0),
            # from cold, over the whole cell: one TTL (300 s) is longer than the cell
            "auth_rpcs_for_the_key": after.get("auth_published", 0.0),
            "peer_auth_requests": peer_auth,
        }


def counters(text: str, names: dict[str, str]) -> dict[str, float]:
    """The counters the scenario needs, summed over workers (one replica's exposition)."""
    wanted = {
        "cluster_rpc_published_total": "published",
        "cluster_rpc_replies_received_total": "received",
        "cluster_saturated_total": "saturated",
    }
    labelled = {
        ('cluster_rpc_replies_dropped_total', 'reason="owner_gone"'): "owner_gone",
        ('cluster_rpc_replies_dropped_total', 'reason="not_owner"'): "not_owner",
        ('cluster_rpc_replies_rerouted_total', 'route="direct"'): "direct",
        ('cluster_rpc_replies_rerouted_total', 'route="broadcast"'): "broadcast",
        ('cluster_rpc_published_total', f'queue="{names["AUTH_REQUEST_QUEUE"]}"'):
            "auth_published",
    }
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        sample, _, raw = line.rpartition(" ")
        name, _, labels = sample.partition("{")
        try:
            value = float(raw)
        except ValueError:
            continue
        keys = [wanted[name]] if name in wanted else []
        keys += [key for (metric, label), key in labelled.items()
                 if metric == name and label in labels]
        for key in keys:
            totals[key] = totals.get(key, 0.0) + value
    return totals


def _peer_auth_requests(stats: Path) -> int | None:
    try:
        return int(json.loads(stats.read_text())["requests_auth"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _redis_answers(uri: str) -> bool:
    try:
        with redis.Redis.from_url(uri, socket_timeout=1, socket_connect_timeout=1) as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def _line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"FAILED: {r['error']}"
    return (f"{r['rps']:.0f} req/s, {r['deliveries_per_reply']} deliveries/reply, "
            f"{r['auth_rpcs_for_the_key']:.0f} auth RPCs for the key, {r['errors']} errors")


def table(results: list[dict[str, Any]]) -> str:
    """The Markdown table for docs/performance.md, with each target's verdict."""
    lines = ["| replicas x workers | req/s | deliveries per reply | forwarded | broadcast "
             "| not_owner | auth RPCs for the key | errors (of which saturated) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        cell = f"{r['replicas']} x {r['workers']}"
        if "error" in r:
            lines.append(f"| {cell} | failed: {r['error'][:60]} | | | | | | |")
            continue
        lines.append(f"| {cell} | {r['rps']:.0f} | {r['deliveries_per_reply']} "
                     f"| {r['forwarded']:.0f} | {r['broadcast']:.0f} | {r['not_owner']:.0f} "
                     f"| {r['auth_rpcs_for_the_key']:.0f} "
                     f"| {r['errors']} ({r.get('saturated_503', 0):.0f}) |")
    return "\n".join(lines)


def problems(results: list[dict[str, Any]]) -> list[str]:
    """Failed cells and request errors (exit 1)."""
    found = []
    for r in results:
        cell = f"{r['replicas']}x{r['workers']}"
        if "error" in r:
            found.append(f"{cell}: {r['error']}")
        elif r["errors"]:
            found.append(f"{cell}: {r['errors']} request errors {r['error_detail']}")
    return found


def misses(results: list[dict[str, Any]]) -> list[str]:
    """Targets missed (exit 2 with --strict)."""
    found = []
    for r in results:
        if "error" in r:
            continue
        cell = f"{r['replicas']}x{r['workers']}"
        per_reply = r["deliveries_per_reply"]
        if per_reply is None or per_reply > DELIVERY_TARGET:
            found.append(f"{cell}: {per_reply} deliveries per reply > {DELIVERY_TARGET:g}")
        if r["auth_cache"] and r["auth_rpcs_for_the_key"] > AUTH_RPC_TARGET:
            found.append(f"{cell}: {r['auth_rpcs_for_the_key']:.0f} auth RPCs for the key "
                         f"> {AUTH_RPC_TARGET}")
    return found


def main(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    """The scenario end to end, from bench/__main__.py's parsed arguments."""
    options = ScaleOutOptions(
        threads=args.threads, connections=args.connections,
        duration=args.duration or (3.0 if args.smoke else 8.0),
        warmup=args.warmup or (1.0 if args.smoke else 2.0), agents=min(args.agents, 200),
        start_timeout=args.start_timeout, auth_cache_uri=args.auth_cache_uri,
        log_dir=ROOT / "bench" / "results" / "logs")
    broker = BrokerEnv.from_environ()
    check_broker(broker)
    generator = choose_generator(args.generator, not args.no_install, args.wrk_threads, log,
                                 install_timeout=30.0 if args.smoke else 300.0)
    started = time.monotonic()
    print(f"scenario scale-out; generator: {generator.description}; {options.threads} threads "
          f"per worker; {options.connections} connections split over the replicas; "
          f"{options.duration:g} s per cell (+{options.warmup:g} s warm-up); peers answer on "
          f"the fixed results queues; auth cache {options.auth_cache_uri or 'off'}", flush=True)
    results = run(options, generator, broker, log)
    found, missed = problems(results), misses(results)
    print()
    print(table(results))
    print()
    print(f"targets: <= {DELIVERY_TARGET:g} deliveries per reply in every cell; <= "
          f"{AUTH_RPC_TARGET} auth RPCs for the key per TTL with the auth cache: "
          + ("MISS: " + "; ".join(missed) if missed else "PASS"))
    for problem in found:
        print(f"ERROR {problem}")
    json_path = args.json or ROOT / "bench" / "results" / "last-scale-out.json"
    write_json(json_path, {
        "scenario": "scale-out", "mode": "smoke" if args.smoke else "full",
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count()}, "generator": generator.description,
        "results": results, "misses": missed, "errors": found,
        "elapsed_s": round(time.monotonic() - started, 1)})
    print(f"\nresults in {json_path}")
    if found:
        return 1
    return 2 if args.strict and missed else 0
