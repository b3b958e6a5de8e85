"""Batched metric updates add up to what prometheus_client's own calls would have written."""

from __future__ import annotations

import os
import random

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cluster_service.observability.metric_batch import MetricBatch

from ...support.service import wait_for

BUCKETS = (.005, .01, .025, .05, .1, .5, 1, 5)


def metrics(registry: CollectorRegistry) -> tuple[Counter, Gauge, Histogram]:
    return (Counter("c_total", "c", ["k"], registry=registry),
            Gauge("g", "g", registry=registry),
            Histogram("h", "h", ["k"], buckets=BUCKETS, registry=registry))


def test_a_flush_writes_what_direct_calls_write() -> None:
    direct, batched = CollectorRegistry(), CollectorRegistry()
    (c1, g1, h1), (c2, g2, h2) = metrics(direct), metrics(batched)
    batch = MetricBatch(every=3600)  # only the explicit flushes below
    values = [random.choice([0.0, .005, .0051, .01, .3, 1, 5, 7, 120]) for _ in range(500)]
    for value in values:
        c1.labels("a").inc()
        h1.labels("a").observe(value)
        g1.inc(1)
        g1.inc(-1 if value > 1 else 0)
        batch.inc(c2.labels("a"))
        batch.observe(h2.labels("a"), value)
        batch.inc(g2, 1)
        batch.inc(g2, -1 if value > 1 else 0)
    assert generate_latest(batched) != generate_latest(direct)  # nothing written yet
    batch.flush()
    strip = lambda text: [line for line in text.decode().splitlines()  # noqa: E731
                          if "_created" not in line]
    assert strip(generate_latest(batched)) == strip(generate_latest(direct))


def test_the_flusher_thread_writes_without_being_asked() -> None:
    registry = CollectorRegistry()
    counter = Counter("t_total", "t", registry=registry)
    batch = MetricBatch(every=0.05)
    batch.inc(counter, 3)
    wait_for(lambda: registry.get_sample_value("t_total") == 3, 5, what="the flusher")


def test_a_forked_child_starts_empty() -> None:
    registry = CollectorRegistry()
    counter = Counter("f_total", "f", registry=registry)
    batch = MetricBatch(every=3600)
    batch.inc(counter, 5)
    pid = os.fork()
    if pid == 0:  # the child: the parent's pending 5 are not its own to write
        batch.flush()
        os._exit(0 if registry.get_sample_value("f_total") == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    batch.flush()
    assert registry.get_sample_value("f_total") == 5
