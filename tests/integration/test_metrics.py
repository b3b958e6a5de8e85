"""/metrics under real gunicorn with several workers: one aggregated answer, whoever scrapes.

Requests go out on fresh connections (``Connection: close``) and concurrently,
so gunicorn spreads them over its workers; a keep-alive session would pin them
all to one worker and prove nothing about aggregation.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from ..support.service import ServiceProcess, wait_for

pytestmark = [pytest.mark.gunicorn, pytest.mark.rabbitmq]

WORKERS = 4
HEALTH = "/api/v3.0/cluster/health"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def fresh_get(service: ServiceProcess, path: str, **headers: str) -> requests.Response:
    return requests.get(service.base_url + path, headers={"Connection": "close", **headers},
                        timeout=15)


def scrape(service: ServiceProcess) -> Samples:
    response = fresh_get(service, "/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of every sample named ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def broker_gauges(samples: Samples) -> dict[str, float]:
    """``cluster_broker_connected`` per worker pid (multiprocess mode ``liveall``)."""
    return {dict(lbls)["pid"]: v for (n, lbls), v in samples.items()
            if n == "cluster_broker_connected"}


def fire(count: int, send: Callable[[], requests.Response], parallel: int = 8) -> list[int]:
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return [r.status_code for r in pool.map(lambda _: send(), range(count))]


def serving_pids(service: ServiceProcess, endpoint: str) -> set[str]:
    """The worker pids whose own metrics file counts a request to ``endpoint``."""
    pids = set()
    for path in Path(service.env["PROMETHEUS_MULTIPROC_DIR"]).glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))  # type: ignore[no-untyped-call]
        for key, count, _timestamp, _pos in values:
            name, sample, labels, _help = json.loads(key)
            if sample == "cluster_http_requests_total" and labels.get("endpoint") == endpoint \
                    and count > 0:
                pids.add(path.stem.split("_", 1)[1])
    return pids


@pytest.fixture
def service(service_factory: Callable[..., ServiceProcess], peers: Any) -> ServiceProcess:
    started = service_factory(WEB_CONCURRENCY=str(WORKERS), GUNICORN_THREADS="4")
    wait_for(lambda: sorted(broker_gauges(scrape(started)).values()) == [1.0] * WORKERS,
             20, 0.2, what=f"{WORKERS} workers reporting a broker connection")
    return started


def test_request_counter_is_the_total_over_all_workers(service: ServiceProcess) -> None:
    requests_sent = 60
    before = value(scrape(service), "cluster_http_requests_total", endpoint=HEALTH)
    assert fire(requests_sent, lambda: fresh_get(service, "/health")) == [200] * requests_sent
    # Each worker writes its batched updates within FLUSH_EVERY_S (observability/metric_batch.py).
    wait_for(lambda: len(serving_pids(service, HEALTH)) >= 2, 5,
             what="requests counted by both workers")

    def counted() -> bool:  # scrapes land on different workers; all must agree
        for _ in range(2 * WORKERS):
            samples = scrape(service)
            if value(samples, "cluster_http_requests_total", endpoint=HEALTH, method="GET",
                     status="200") != before + requests_sent:
                return False
            if value(samples, "cluster_http_request_duration_seconds_count",
                     endpoint=HEALTH) != before + requests_sent:
                return False
        return True

    wait_for(counted, 5, 0.2, what=f"every scrape counting the {requests_sent} requests")


def test_broker_gauge_forgets_a_dead_worker(service: ServiceProcess) -> None:
    victim = str(sorted(service.worker_pids())[0])
    assert broker_gauges(scrape(service))[victim] == 1.0
    os.kill(int(victim), signal.SIGKILL)

    def replaced() -> bool:
        gauges = broker_gauges(scrape(service))
        return victim not in gauges and sorted(gauges.values()) == [1.0] * WORKERS

    wait_for(replaced, 30, 0.2, what="the dead worker's gauge gone and a new worker connected")


def test_auth_outcomes_and_rpc_metrics(service: ServiceProcess) -> None:
    valid, wrong, missing = 12, 3, 2
    key, bad_key = {"X-API-Key": "demo-key"}, {"X-API-Key": "wrong-key"}
    before = scrape(service)
    # One at a time: concurrent requests with one key in one worker share a single
    # flight, and only its leader records an outcome.
    assert fire(valid, lambda: fresh_get(service, "/agents/connected", **key), 1) == [200] * valid
    assert fire(wrong, lambda: fresh_get(service, "/agents/connected", **bad_key),
                1) == [401] * wrong
    assert fire(missing, lambda: fresh_get(service, "/agents/connected"), 1) == [401] * missing
    agents = "/api/v3.0/cluster/agents/connected"
    sent = valid + wrong + missing

    def all_written() -> Any:
        """A scrape once every worker has written its batched updates (within a second)."""
        samples = scrape(service)
        total = sum(value(samples, "cluster_http_requests_total", endpoint=agents, status=status)
                    - value(before, "cluster_http_requests_total", endpoint=agents,
                            status=status) for status in ("200", "401"))
        queue = service.env["AGENTS_REQUEST_QUEUE"]
        rpcs = value(samples, "cluster_rpc_duration_seconds_count", queue=queue, outcome="ok") \
            - value(before, "cluster_rpc_duration_seconds_count", queue=queue, outcome="ok")
        return samples if total == sent and rpcs >= valid else None

    after = wait_for(all_written, 5, 0.2, what=f"the {sent} requests in the metrics")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    outcomes = "cluster_auth_outcomes_total"
    # A worker asks the User Service once per key, then answers from its cache.
    assert delta(outcomes, outcome="valid") + delta(outcomes, outcome="cached") == valid
    assert 1 <= delta(outcomes, outcome="valid") <= WORKERS
    assert delta(outcomes, outcome="rejected") == wrong + missing
    assert delta(outcomes, outcome="error") == 0
    assert delta("cluster_http_requests_total", endpoint=agents, status="200") == valid
    assert delta("cluster_http_requests_total", endpoint=agents, status="401") == wrong + missing
    queue = service.env["AGENTS_REQUEST_QUEUE"]
    assert delta("cluster_rpc_published_total", queue=queue) == valid
    assert delta("cluster_rpc_duration_seconds_count", queue=queue, outcome="ok") == valid
    assert value(after, "cluster_rpc_inflight") == 0
    # Set from the last list-agents reply: the stand-in peers report their 20 agents.
    connected = len(fresh_get(service, "/agents/connected", **key).json()["connected_agents"])
    assert connected > 0
    assert value(scrape(service), "cluster_agents_connected") == connected
