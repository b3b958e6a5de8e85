"""A bounded mixed load against the real service: nothing fails, nothing leaks.

2,000 requests (namespaces over 20 agents, connected agents, health) from 32
client threads against 3 workers x 8 threads, bounded to 90 seconds. Speed is
not asserted here (see bench/); correctness under concurrency is.
"""

from __future__ import annotations

import concurrent.futures
import re
import threading
import time
from typing import Any, Callable

import pytest
import requests

from ..support.service import ServiceProcess, wait_for

pytestmark = [pytest.mark.load, pytest.mark.rabbitmq, pytest.mark.gunicorn]

REQUESTS = 2000
CLIENTS = 32
BOUND_SECONDS = 90


def _one(service: ServiceProcess, index: int, local: threading.local) -> tuple[int, str]:
    session = getattr(local, "session", None) or requests.Session()
    local.session = session
    kind = index % 10
    if kind == 0:
        response = session.get(service.base_url + "/health", timeout=30)
        return response.status_code, "" if response.json()["status"] == "healthy" else "bad health"
    headers = {"X-API-Key": "demo-key"}
    if kind == 1:
        response = session.get(service.base_url + "/agents/connected", headers=headers, timeout=30)
        ok = response.status_code == 200 and "demo-agent-1" in response.json()["connected_agents"]
        return response.status_code, "" if ok else "bad agents"
    agent = f"demo-agent-{index % 20 + 1}"
    response = session.get(service.base_url + "/namespaces", headers=headers, timeout=30,
                           params={"agent_id": agent, "cluster_id": str(index % 3)})
    if response.status_code != 200:
        return response.status_code, response.text[:200]
    body = response.json()
    names = {ns["name"] for ns in body["namespaces"]}
    ok = body["agent_id"] == agent and f"team-{agent}" in names and \
        body["cluster_id"] == index % 3 and body["total_count"] == len(names)
    return 200, "" if ok else f"wrong answer for {agent}"


def test_mixed_load_has_no_errors_and_leaves_nothing_pending(
        peers: Any, service_factory: Callable[..., ServiceProcess]) -> None:
    service = service_factory(WEB_CONCURRENCY="3", GUNICORN_THREADS="8")
    local = threading.local()
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        futures = [pool.submit(_one, service, i, local) for i in range(REQUESTS)]
        done, not_done = concurrent.futures.wait(futures, timeout=BOUND_SECONDS)
    assert not not_done, f"{len(not_done)} requests still running after {BOUND_SECONDS}s"
    results = [f.result() for f in done]
    failures = [r for r in results if r != (200, "")]
    elapsed = time.monotonic() - started
    print(f"\n{REQUESTS} requests in {elapsed:.1f}s ({REQUESTS / elapsed:.0f} req/s), "
          f"{len(failures)} failures")
    assert failures == []

    def inflight_zero() -> bool:
        text = service.get("/metrics").text
        values = re.findall(r"^cluster_rpc_inflight(?:\{[^}]*\})? ([0-9.e+-]+)$", text, re.M)
        return bool(values) and all(float(v) == 0 for v in values)

    wait_for(inflight_zero, 10, what="no RPC left in flight")
