"""Real agent latency: slow agents are served at full concurrency, hung ones isolated.

Real gunicorn with the real gunicorn.conf.py and its default concurrency, the
real broker, and peers that take 0.5 s or never answer.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import Any, Callable, Iterator

import pytest

from cluster_service.config import load_settings

from ..support.faults import (HEALTHY_AGENT, Outcome, assert_service_unavailable, call, namespaces,
                              percentile, run_together, summary, warm_auth)
from ..support.prometheus import metric, settled_metric
from ..support.peers import start_peers
from ..support.service import ServiceProcess, queue_env, wait_for
from ..support.switchable_peer import SwitchablePeer

pytestmark = [pytest.mark.fault, pytest.mark.rabbitmq, pytest.mark.gunicorn]

NS_QUEUE_VAR = "NAMESPACE_REQUEST_QUEUE"


@pytest.mark.timeout(90)
class TestSlowAgentsOnDefaultSettings:
    def test_a_burst_as_large_as_the_configured_concurrency_to_half_second_agents_is_all_200(
            self, peers: Any, service_factory: Callable[..., ServiceProcess]) -> None:
        defaults = load_settings({})  # the shipped defaults: 3 workers x 256 threads
        service = service_factory(WEB_CONCURRENCY=str(defaults.web_concurrency),
                                  GUNICORN_THREADS=str(defaults.gunicorn_threads))
        warm_auth(service)
        burst = defaults.web_concurrency * defaults.gunicorn_threads
        outcomes = run_together([partial(namespaces, service, f"slow-500-b{i % 24}", i)
                                 for i in range(burst)])
        print(f"\nburst of {burst} to 0.5 s agents: {summary(outcomes)}, slowest "
              f"{max(o.elapsed for o in outcomes):.2f}s")
        assert all(o.status == 200 for o in outcomes), summary(outcomes)
        assert metric(service, "cluster_saturated_total") == 0

    def test_thirty_identical_requests_to_a_half_second_agent_share_a_few_rpcs(
            self, prefix: str, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        service = service_factory(WEB_CONCURRENCY="3")
        warm_auth(service)
        queue = queue_env(prefix)[NS_QUEUE_VAR]
        before = settled_metric(service, "cluster_rpc_published_total", queue=queue)
        outcomes = run_together([partial(namespaces, service, "slow-500-same", 7)
                                 for _ in range(30)])
        rpcs = settled_metric(service, "cluster_rpc_published_total", queue=queue) - before
        print(f"\n30 identical requests: {summary(outcomes)}, {rpcs:g} namespace RPCs")
        assert all(o.status == 200 for o in outcomes), summary(outcomes)
        assert rpcs <= 3  # one flight per worker at most


@pytest.fixture
def switchable(prefix: str) -> Iterator[SwitchablePeer]:
    """A namespaces peer the test can hang and heal; the stand-in peers keep auth."""
    peer = SwitchablePeer(queue_env(prefix)[NS_QUEUE_VAR]).start()
    auth_peers = start_peers(prefix, namespace_request_queue=f"{prefix}unused-namespaces")
    yield peer
    auth_peers.stop()
    peer.stop()


@pytest.mark.timeout(90)
class TestHungAgent:
    def test_the_breaker_isolates_a_hung_agent_then_closes_when_it_answers(
            self, switchable: SwitchablePeer,
            service_factory: Callable[..., ServiceProcess]) -> None:
        service = service_factory(WEB_CONCURRENCY="1", WEBSOCKET_TIMEOUT="1",
                                  BREAKER_FAILURES="2", BREAKER_COOLDOWN="2")
        warm_auth(service)
        switchable.set_hung("agent-h", True)
        for cluster in (1, 2):
            assert namespaces(service, "agent-h", cluster).status == 504
        asked = switchable.requests

        refused = namespaces(service, "agent-h", 3)
        assert_service_unavailable(refused)
        assert "not responding" in refused.body["message"]
        assert refused.elapsed < 0.5, refused  # failed fast, not after WEBSOCKET_TIMEOUT
        assert switchable.requests == asked  # the hung agent was not asked again
        assert namespaces(service, "agent-ok", 1).status == 200  # others are served
        assert metric(service, "cluster_agent_breaker_open") == 1
        opened = [r for r in service.json_logs() if r.get("event") == "agent_breaker"]
        assert [(r["state"], r["agent_id"], r["level"]) for r in opened] == \
            [("open", "agent-h", "WARNING")]

        switchable.set_hung("agent-h", False)
        healed = wait_for(lambda: (lambda o: o if o.status == 200 else None)(
            namespaces(service, "agent-h", 4)), 15, interval=0.2,
            what="the agent served again after its cool-down")
        assert healed.body["namespaces"][0]["name"] == "ns-of-agent-h"
        assert metric(service, "cluster_agent_breaker_open") == 0
        assert metric(service, "cluster_agent_breaker_transitions_total", state="closed") == 1

    def test_probes_and_healthy_agents_keep_working_during_a_storm_on_a_hung_agent(
            self, peers: Any, service_factory: Callable[..., ServiceProcess]) -> None:
        storm_size, timeout = 64, 2.0
        service = service_factory(WEBSOCKET_TIMEOUT=str(timeout))  # default concurrency
        warm_auth(service)
        stop = threading.Event()
        health: list[Outcome] = []
        healthy: list[Outcome] = []

        def poll(into: list[Outcome], probe: Callable[[int], Outcome]) -> None:
            n = 0
            while not stop.is_set():
                into.append(probe(n))
                n += 1
                stop.wait(0.02)

        pollers = [threading.Thread(target=poll, args=(health, lambda n: call(
                       service, "/health", timeout=10))),
                   threading.Thread(target=poll, args=(healthy, lambda n: namespaces(
                       service, HEALTHY_AGENT, 500_000 + n, timeout=10)))]
        for thread in pollers:
            thread.start()
        try:
            storm = run_together([partial(namespaces, service, "fault-silent-storm", i,
                                          timeout=20) for i in range(storm_size)])
            after = [namespaces(service, "fault-silent-storm", 10_000 + i) for i in range(6)]
        finally:
            stop.set()
            for thread in pollers:
                thread.join(15)
        storm_start, storm_end = min(o.started for o in storm), max(o.ended for o in storm)
        during = [o.elapsed for o in health if storm_start <= o.started and o.ended <= storm_end]
        print(f"\nstorm of {storm_size} on a hung agent: {summary(storm)}; /health p99 "
              f"{percentile(during, 0.99):.3f}s over {len(during)} probes; healthy agent: "
              f"{summary(healthy)}; afterwards: {summary(after)}")

        assert all(o.status == 200 for o in health), summary(health)
        assert len(during) >= 5
        assert percentile(during, 0.99) < 1.0
        assert all(o.status == 200 for o in healthy), summary(healthy)
        assert all(o.status in (503, 504) for o in storm), summary(storm)
        # Nobody waited longer than the timeout it was promised, line included.
        assert max(o.elapsed for o in storm) < timeout + 2
        # Each worker keeps its own breakers, and connections need not reach both
        # workers: the fail-fast answer itself is pinned by the single-worker test.
        assert all(o.status in (503, 504) for o in after), summary(after)
        assert any(o.status == 503 and o.elapsed < timeout / 2 for o in after), summary(after)
        assert metric(service, "cluster_agent_breaker_open") >= 1
