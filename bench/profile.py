"""``python -m bench.profile CONFIG``: where one worker's time goes under load.

Starts one configuration of ``bench/configs.py`` as the harness does (1 worker x 16
threads, the same peers and environment), warms it up, then runs ``py-spy record
--gil`` on the worker while wrk loads it. ``--gil`` keeps only the samples of the
thread holding the GIL, so the shares are shares of the CPU the worker's Python
code used (the worker is one process: its threads share one GIL, hence one core).

Each sample is charged to the innermost frame of its stack that belongs to a known
part (a library, or one of our folders); a sample entirely in the standard library
is charged to "stdlib". The second table is inclusive: the share of samples whose
stack passes through each of our functions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess  # nosec B404 - runs py-spy, fixed argv
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from bench import procs
from bench.__main__ import RESULTS
from bench.broker import BrokerEnv, RunNames, check_broker, delete_all
from bench.configs import BY_NAME
from bench.load import choose_generator
from bench.runner import ConfigRun, Options

# (part, what a frame's file path contains), innermost match wins; order matters.
PARTS: tuple[tuple[str, str], ...] = (
    ("Flask-Limiter / limits", "/flask_limiter/"), ("Flask-Limiter / limits", "/limits/"),
    ("marshmallow", "/marshmallow/"), ("prometheus_client", "/prometheus_client/"),
    ("python-json-logger", "/pythonjsonlogger/"), ("logging (stdlib)", "/logging/"),
    ("pika", "/pika/"), ("gunicorn", "/gunicorn/"), ("Flask / Werkzeug", "/flask/"),
    ("Flask / Werkzeug", "/werkzeug/"), ("redis", "/redis/"),
    ("ours: api", "/cluster_service/api/"), ("ours: domain", "/cluster_service/domain/"),
    ("ours: rpc", "/cluster_service/rpc/"),
    ("ours: concurrency", "/cluster_service/concurrency/"),
    ("ours: observability", "/cluster_service/observability/"),
    ("ours: server", "/cluster_service/server/"), ("ours", "/cluster_service/"),
    ("bench app", "/bench/apps/"),
)


def part_of(frame: str) -> str | None:
    """The part a py-spy frame ("function (path:line)") belongs to, None for stdlib.

    py-spy names a library's file from its package down ("flask/app.py:1536").
    """
    path = "/" + frame.rpartition(" (")[2]
    for part, marker in PARTS:
        if marker in path:
            return part
    return None


def frame_name(frame: str) -> str:
    """"function (file)" of a py-spy frame, the file named from its package down."""
    function, _, where = frame.rpartition(" (")
    return f"{function} ({where.rsplit(':', 1)[0]})"


def summarise(raw: str) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    """Samples in all, by part (self), by our functions (inclusive), by frame (self)."""
    total, by_part, inclusive, frames_self = 0, Counter[str](), Counter[str](), Counter[str]()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        part = next((p for p in map(part_of, reversed(frames)) if p is not None), "stdlib")
        by_part[part] += count
        frames_self[frame_name(frames[-1])] += count
        seen = set()
        for frame in frames:
            if "cluster_service/" in frame or "bench/apps/" in frame:
                name = frame.split(" (")[0] + " (" + frame.split("/")[-1].split(":")[0] + ")"
                if name not in seen:
                    seen.add(name)
                    inclusive[name] += count
    return total, by_part, inclusive, frames_self


class ProfileRun(ConfigRun):
    """A ConfigRun whose one measured window is recorded by py-spy."""

    def __init__(self, *args: Any, out: Path, rate: int, idle: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.out, self.rate, self.idle = out, rate, idle

    def _measure(self) -> dict[str, Any]:
        pids = procs.worker_pids(self.server_pid)
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        mode = ["--idle"] if self.idle else ["--gil"]
        argv = [spy, "record", *mode, "--nonblocking", "-r", str(self.rate), "-f", "raw",
                "-d", str(max(1, round(self.options.duration) - 1)), "-o", str(self.out),
                "-p", str(pids[0])]
        result: dict[str, Any] = {}
        loader = threading.Thread(target=lambda: result.update(run=super(ProfileRun, self)
                                                               ._measure()))
        loader.start()
        subprocess.run(argv, check=True, capture_output=True,  # nosec B603
                       timeout=self.options.duration + 30)
        loader.join(self.options.duration + 30)
        return dict(result["run"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", choices=sorted(BY_NAME))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25, help="rows of the inclusive table")
    parser.add_argument("--top-frames", type=int, default=10,
                        help="rows of the self table by frame (function and file)")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw output here")
    parser.add_argument("--idle", action="store_true",
                        help="every thread, waiting ones included (where threads wait), "
                             "instead of only the GIL holder (where the CPU goes)")
    args = parser.parse_args(argv)
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    broker = BrokerEnv.from_environ()
    check_broker(broker)
    names = RunNames(prefix=f"profile-{os.getpid()}-")
    options = Options(workers=args.workers, threads=args.threads, connections=args.connections,
                      duration=args.seconds, warmup=2.0, agents=args.agents, repeat=1,
                      rss_requests=0, start_timeout=30.0, peer_reply_style="reply_to",
                      log_dir=RESULTS / "logs")
    generator = choose_generator("auto", False, 2, log)
    out = args.raw or Path(tempfile.mkstemp(prefix="py-spy-", suffix=".txt")[1])
    try:
        result = ProfileRun(BY_NAME[args.config], options, generator, broker, names, log,
                            out=out, rate=args.rate, idle=args.idle).execute()
    finally:
        delete_all(broker, names.queues(), names.exchanges())
    if "error" in result:
        print(f"FAILED: {result['error']}", file=sys.stderr)
        return 1
    total, by_part, inclusive, frames_self = summarise(out.read_text())
    if args.raw is None:
        out.unlink(missing_ok=True)
    kind = "thread" if args.idle else "GIL"
    print(f"{args.config}: {result['rps']:.0f} req/s under py-spy, {total} {kind} samples "
          f"({args.workers} x {args.threads}, {args.connections} connections)")
    print("\nself, by part (innermost known frame):")
    for part, count in by_part.most_common():
        print(f"  {100 * count / total:5.1f} %  {part}")
    print(f"\nself, top {args.top_frames} frames (innermost function of each sample):")
    for name, count in frames_self.most_common(args.top_frames):
        print(f"  {100 * count / total:5.1f} %  {name}")
    print(f"\ninclusive, our functions (top {args.top}):")
    for name, count in inclusive.most_common(args.top):
        print(f"  {100 * count / total:5.1f} %  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
