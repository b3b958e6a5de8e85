"""Metric updates gathered in memory and written to prometheus_client in batches.

Why: in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``) every ``inc`` and
``observe`` of prometheus_client takes one lock shared by every metric of the
process, checks the pid and writes the value to a memory-mapped file. A request
makes about ten such updates; with many request threads they queue on that lock,
and together they were the largest single item of a ``/health`` request's CPU
(docs/performance.md). Here a request only adds to a dict under our own lock
(a few hundred nanoseconds); a daemon thread writes the sums twice a second, one
update per series that changed, whatever the traffic.

What it costs: a scrape may miss up to half a second of the answering worker's
updates, and as much of every other worker's (Prometheus scrapes every 15
s or more, and counters and histograms are cumulative: nothing is lost, it lands
in the next scrape). ``flush()`` writes at once: the ``/metrics`` view calls it
before rendering, and the worker calls it when it exits.

Histograms are batched by their own bucket bounds: ``observe`` finds the bucket
(``bisect``, the bucket rule of prometheus_client's own ``observe``: the first
upper bound >= the value), ``flush`` adds each bucket's count and the sum to the
child's bucket and sum values, as prometheus_client's ``observe`` would have one
value at a time (``tests/unit/observability/test_metric_batch.py`` checks the two agree).
"""

from __future__ import annotations

import bisect
import os
import threading
from typing import Any

FLUSH_EVERY_S = 0.5


class MetricBatch:
    """Counters, gauge deltas and histogram observations, summed until the next flush."""

    def __init__(self, every: float = FLUSH_EVERY_S) -> None:
        self._every = every
        self._lock = threading.Lock()
        self._deltas: dict[Any, float] = {}  # counter or gauge child -> amount to add
        self._histograms: dict[Any, list[float]] = {}  # child -> bucket counts..., sum
        self._flush_lock = threading.Lock()
        self._started = False  # this process's flusher thread runs
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """A forked child starts empty (what is pending is the parent's) with no flusher."""
        self._lock, self._flush_lock = threading.Lock(), threading.Lock()
        self._deltas, self._histograms = {}, {}
        self._started = False

    def inc(self, child: Any, amount: float = 1.0) -> None:
        """Add ``amount`` to a counter or gauge child (``Gauge.inc`` takes negatives)."""
        with self._lock:
            self._deltas[child] = self._deltas.get(child, 0.0) + amount
        self._ensure_flusher()

    def observe(self, child: Any, value: float) -> None:
        """Record one observation of a histogram child."""
        bounds = child._upper_bounds
        with self._lock:
            entry = self._histograms.get(child)
            if entry is None:
                entry = self._histograms[child] = [0.0] * (len(bounds) + 1)
            entry[bisect.bisect_left(bounds, value)] += 1
            entry[-1] += value
        self._ensure_flusher()

    def flush(self) -> None:
        """Write what was gathered to the metric values (their files in multiprocess mode)."""
        with self._flush_lock:
            with self._lock:
                deltas, self._deltas = self._deltas, {}
                histograms, self._histograms = self._histograms, {}
            for child, amount in deltas.items():
                if amount:
                    child.inc(amount)
            for child, entry in histograms.items():
                for bucket, count in zip(child._buckets, entry):
                    if count:
                        bucket.inc(count)
                child._sum.inc(entry[-1])

    def _ensure_flusher(self) -> None:
        if self._started:
            return
        with self._flush_lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._run, name="metrics-flush", daemon=True).start()

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(self._every):
            try:
                self.flush()
            except Exception:  # nosec B112 - a failed write is retried next time round
                continue
