"""``python -m bench``: run the hot-path configurations and print the comparison.

Every configuration runs alone under gunicorn, 1 worker x 16 threads by default
(so that no comparison depends on how connections land on workers), then
``health`` and ``hello`` run again with 2 workers, with fresh connections in
each window, sampling how the connections spread over the workers.

Exit status: 0 when every configuration ran without errors (the ratio targets
are reported, never enforced, unless ``--strict``), 1 when a configuration
failed to start or a request failed, 2 when ``--strict`` and a target missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from bench import operations, report, scale_out, slow_agents
from bench.broker import BrokerEnv, RunNames, check_broker, delete_all
from bench.configs import BY_NAME, CONFIGS
from bench.load import choose_generator
from bench.runner import ROOT, ConfigRun, Options

RESULTS = ROOT / "bench" / "results"
# The spread runs: label -> configuration, run with --spread-workers workers.
SPREAD_RUNS = {"health-2w": "health", "hello-2w": "hello"}
SMOKE_BUDGET_S = 90.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="CI mode: short runs (3 s), targets reported only")
    parser.add_argument("--scenario",
                        choices=("hot-path", "configs", "slow-agents", "scale-out",
                                 "operations"),
                        default="hot-path",
                        help="hot-path (or configs): the hot-path comparison (default); "
                             "slow-agents: "
                             "agents that answer in 0.2-1 s or never (bench/slow_agents.py); "
                             "scale-out: R replicas x W workers with fixed-queue peers "
                             "(bench/scale_out.py); operations: /pods whole and paged and "
                             "/pods/<pod>/logs of a 5,000-pod cluster at 0.3 s, against a "
                             "bare app, and RSS at 20,000 pods (bench/operations.py)")
    parser.add_argument("--only", default="",
                        help="comma-separated configurations (default: all): "
                             + ",".join([c.name for c in CONFIGS] + list(SPREAD_RUNS)))
    parser.add_argument("--duration", type=float, help="seconds per measured run "
                        "(default 10, smoke 3)")
    parser.add_argument("--warmup", type=float, help="seconds of unmeasured warm-up "
                        "(default 2, smoke 1)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="measured windows per configuration; the median is reported "
                             "(see runner.ConfigRun._record)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1,
                        help="gunicorn workers of every configuration but the spread runs")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads per worker")
    parser.add_argument("--spread-workers", type=int, default=2,
                        help="workers of the spread runs (health-2w, hello-2w)")
    parser.add_argument("--spread-rounds", type=int, default=4,
                        help="windows of the spread runs, each with fresh connections")
    parser.add_argument("--agents", type=int, default=1000,
                        help="agents the spread configurations cycle through")
    parser.add_argument("--requests-for-rss", type=int, dest="rss_requests",
                        help="requests pushed through namespaces before reading RSS "
                             "(default 20000, smoke 0)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--no-install", action="store_true",
                        help="do not try to apt-get install wrk when it is missing")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--peer-reply-style", default="reply_to",
                        help="passed to devpeers --reply-style ('' = its default)")
    parser.add_argument("--start-timeout", type=float, default=30.0,
                        help="seconds a configuration may take to become ready")
    parser.add_argument("--json", type=Path, help="where to write results "
                        "(default bench/results/last.json, smoke last-smoke.json)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 2 when a ratio target is missed (full runs)")
    parser.add_argument("--slow-agents-rows", choices=("all", "hung", "attacks"), default="all",
                        help="slow-agents: every row; the hung-agents and attack rows; or "
                             "the attack rows alone")
    scale_out.add_arguments(parser)
    args = parser.parse_args(argv)
    unknown = [n for n in args.only.split(",") if n and n not in BY_NAME and n not in SPREAD_RUNS]
    if unknown:
        parser.error(f"unknown configuration(s): {', '.join(unknown)}")
    return args


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _raise_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt("SIGTERM")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    if args.scenario == "slow-agents":
        return slow_agents.main(args.smoke, args.duration, args.warmup, RESULTS, _log,
                                args.slow_agents_rows)
    if args.scenario == "scale-out":
        return scale_out.main(args, _log)
    if args.scenario == "operations":
        return operations.main(args.smoke, args.duration, args.warmup, args.workers,
                               args.threads, RESULTS, _log)
    selected = [c for c in CONFIGS if not args.only or c.name in args.only.split(",")]
    options = Options(
        workers=args.workers, threads=args.threads, connections=args.connections,
        duration=args.duration or (3.0 if args.smoke else 10.0),
        warmup=args.warmup or (1.0 if args.smoke else 2.0), agents=args.agents,
        repeat=1 if args.smoke and args.repeat == 3 else max(1, args.repeat),
        rss_requests=(args.rss_requests if args.rss_requests is not None
                      else (0 if args.smoke else report.RSS_REQUESTS)),
        start_timeout=args.start_timeout, peer_reply_style=args.peer_reply_style,
        log_dir=RESULTS / "logs")
    json_path = args.json or RESULTS / ("last-smoke.json" if args.smoke else "last.json")
    broker = BrokerEnv.from_environ()
    names = RunNames(prefix=f"bench-{os.getpid()}-")
    started = time.monotonic()
    check_broker(broker)
    generator = choose_generator(args.generator, not args.no_install, args.wrk_threads, _log,
                                 install_timeout=30.0 if args.smoke else 300.0)
    print(f"mode: {'smoke' if args.smoke else 'full'}; generator: {generator.description}; "
          f"gunicorn gthread {options.workers} workers x {options.threads} threads; "
          f"{options.connections} connections; {options.repeat} x {options.duration:g} s per "
          f"configuration (+{options.warmup:g} s warm-up); spread runs "
          f"{args.spread_workers} workers; "
          f"broker {broker.host}:{broker.port}", flush=True)
    results: list[dict[str, Any]] = []
    runs = [(config, options, config.name, False) for config in selected]
    spread_options = dataclasses.replace(options, workers=args.spread_workers,
                                         repeat=2 if args.smoke and args.spread_rounds == 4
                                         else max(1, args.spread_rounds), rss_requests=0)
    runs += [(BY_NAME[name], spread_options, label, True) for label, name in SPREAD_RUNS.items()
             if not args.only or label in args.only.split(",")]
    try:
        for config, run_options, label, sample in runs:
            _log(f"[{time.monotonic() - started:5.1f}s] {label}: {config.description} "
                 f"({run_options.workers} x {run_options.threads})")
            run = ConfigRun(config, run_options, generator, broker, names, _log, label=label,
                            sample_spread=sample)
            result = run.execute()
            results.append(result)
            if "error" in result:
                _log(f"  {label} FAILED: {result['error']}")
            else:
                _log(f"  {label}: {result['rps']:.0f} req/s, {result['errors']} errors")
    finally:
        delete_all(broker, names.queues(), names.exchanges())
    return _finish(args, options, generator.description, results, json_path,
                   time.monotonic() - started)


def _finish(args: argparse.Namespace, options: Options, generator: str,
            results: list[dict[str, Any]], json_path: Path, elapsed: float) -> int:
    found = report.checks({r["name"]: r for r in results}, options.rss_requests)
    problems = report.failures(results)
    print()
    print(report.table(results))
    print()
    print("targets (ratios of req/s measured in this run):")
    print(report.checks_table(found))
    for r in results:
        if r.get("rpcs_by_queue"):
            print(f"{r['name']}: RPCs/request by queue {r['rpcs_by_queue']}")
    for problem in problems:
        print(f"ERROR {problem}")
    print(f"\ntotal {elapsed:.1f} s; results in {json_path}")
    if args.smoke and elapsed >= SMOKE_BUDGET_S:
        print(f"WARNING smoke run took {elapsed:.0f} s, "
              f"over its {SMOKE_BUDGET_S:.0f} s budget")
    report.write_json(json_path, {
        "mode": "smoke" if args.smoke else "full",
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "generator": generator,
        "settings": {"workers": options.workers, "threads": options.threads,
                     "worker_class": "gthread (the service: its subclass)",
                     "connections": options.connections,
                     "duration_s": options.duration, "warmup_s": options.warmup,
                     "agents": options.agents, "repeat": options.repeat,
                     "rss_requests": options.rss_requests},
        "results": results,
        "targets": [c.as_dict() for c in found],
        "errors": problems,
        "elapsed_s": round(elapsed, 1)})
    if problems:
        return 1
    if args.strict and any(c.status == "MISS" for c in found):
        return 2
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        _log("interrupted: every started process was stopped")
        sys.exit(130)
