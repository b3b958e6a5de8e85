"""Peer faults: a silent agent, a broken peer, a storm of identical requests.

See this folder's ``__init__.py`` for how every fault test runs.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator

import pytest
import requests

from ...support.faults import (BODY_FRAGMENTS, HEALTHY_AGENT, namespaces, rss_kib, run_together,
                               summary, warm_auth)
from ...support.prometheus import metric, settled_metric
from ...support.peers import delete_queues, start_peers
from ...support.service import ServiceProcess, queue_env, wait_for


pytestmark = [pytest.mark.fault, pytest.mark.rabbitmq, pytest.mark.gunicorn]


@pytest.mark.timeout(60)
class TestSilentPeer:
    def test_times_out_at_websocket_timeout_and_leaves_nothing_pending(
            self, peers: Any, service_factory: Callable[..., ServiceProcess]) -> None:
        timeout = 1.0
        service = service_factory(WEB_CONCURRENCY="1", WEBSOCKET_TIMEOUT=str(timeout))
        warm_auth(service)

        outcomes = run_together([partial(namespaces, service, f"fault-silent-{i}", i)
                                 for i in range(4)])
        print(f"\nsilent peer: elapsed {[round(o.elapsed, 3) for o in outcomes]}")
        for outcome in outcomes:
            assert outcome.status == 504, outcome
            assert outcome.error_code == "agent_timeout"
            assert timeout <= outcome.elapsed <= timeout * 1.1 + 0.3, outcome.elapsed
        wait_for(lambda: metric(service, "cluster_rpc_inflight") == 0, 5, what="no RPC pending")
        wait_for(lambda: metric(service, "cluster_rpc_duration_seconds_count",
                                outcome="timeout") >= 4, 5, what="4 timeouts counted")

    def test_many_timeouts_leave_worker_memory_flat(
            self, peers: Any, service_factory: Callable[..., ServiceProcess]) -> None:
        clients, warmup, measured = 12, 300, 2000
        service = service_factory(WEB_CONCURRENCY="1", GUNICORN_THREADS="16",
                                  MAX_INFLIGHT_RPCS="16", MAX_INFLIGHT_PER_AGENT="16",
                                  WEBSOCKET_TIMEOUT="0.05")
        (worker,) = warm_auth(service)
        tickets = iter(range(10**9))
        lock = threading.Lock()

        def storm(total: int) -> list[int]:
            """``total`` requests to silent agents from ``clients`` keep-alive clients."""
            issued = 0
            statuses: list[int] = []

            def client() -> None:
                nonlocal issued
                with requests.Session() as session:
                    while True:
                        with lock:
                            if issued >= total:
                                return
                            issued += 1
                            n = next(tickets)
                        # a distinct agent per request: no single flight, and the per-agent
                        # bulkheads must be forgotten once idle
                        status = namespaces(service, f"fault-silent-{n}", n, 10, session).status
                        with lock:
                            statuses.append(status)

            threads = [threading.Thread(target=client) for _ in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            return statuses

        warm = storm(warmup)
        assert set(warm) == {504}, set(warm)
        before = rss_kib(worker)
        started = time.monotonic()
        statuses = storm(measured)
        took = time.monotonic() - started
        after = rss_kib(worker)
        growth = (after - before) / 1024
        print(f"\n{measured} timeouts in {took:.1f}s; worker RSS {before / 1024:.1f} MiB -> "
              f"{after / 1024:.1f} MiB ({growth:+.2f} MiB)")
        assert len(statuses) == measured and set(statuses) == {504}, \
            {s: statuses.count(s) for s in set(statuses)}
        assert took < 60
        assert growth < 10, f"worker RSS grew by {growth:.1f} MiB over {measured} timeouts"
        wait_for(lambda: metric(service, "cluster_rpc_inflight") == 0, 5,
                 what="no RPC pending")
        wait_for(lambda: metric(service, "cluster_rpc_duration_seconds_count",
                                outcome="timeout") >= warmup + measured, 5,
                 what="every timeout counted")


@dataclass
class BrokenPeerService:
    service: ServiceProcess
    peers: Any
    pids: set[int]
    timeout: float


@pytest.fixture(scope="class")
def broken_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokenPeerService]:
    """One service and peers shared by the broken-peer tests (each fault is a quick request)."""
    prefix = f"t-{uuid.uuid4().hex[:10]}-"
    peers = start_peers(prefix)
    timeout = 1.0
    service = ServiceProcess(tmp_path_factory.mktemp("broken-peer"),
                             {**queue_env(prefix), "WEB_CONCURRENCY": "1",
                              "WEBSOCKET_TIMEOUT": str(timeout)})
    try:
        service.start()
        yield BrokenPeerService(service, peers, warm_auth(service), timeout)
    finally:
        service.stop()
        peers.stop()
        delete_queues(prefix)


def assert_still_serving(broken: BrokenPeerService) -> None:
    normal = namespaces(broken.service, HEALTHY_AGENT)
    assert normal.status == 200, normal
    assert broken.service.worker_pids() == broken.pids, "the worker was restarted"


@pytest.mark.timeout(60)
class TestBrokenPeer:
    @pytest.mark.parametrize("agent_id", [
        "fault-malformed-1",          # body is not JSON
        "fault-wrong-shape-1",        # result without namespaces
        "fault-wrong-shape-list-1",   # body is a JSON list (matched by correlation_id)
        "fault-result-not-json-1",    # result is a string that is not JSON
        "fault-huge-1",  # ~5 MB, over MAX_REPLY_BYTES: dropped unparsed, 502
    ])
    def test_invalid_reply_is_an_agent_error(self, broken_peer: BrokenPeerService,
                                             agent_id: str) -> None:
        outcome = namespaces(broken_peer.service, agent_id)
        assert outcome.status == 502, (outcome.status, outcome.error_code)
        assert outcome.error_code == "agent_error"
        assert outcome.body["message"].startswith("Failed to communicate with agent")
        assert_still_serving(broken_peer)

    def test_reply_without_request_id_times_out(self, broken_peer: BrokenPeerService) -> None:
        outcome = namespaces(broken_peer.service, "fault-no-request-id-1")
        assert outcome.status == 504, outcome
        assert outcome.error_code == "agent_timeout"
        assert broken_peer.timeout <= outcome.elapsed <= broken_peer.timeout * 1.1 + 0.3
        wait_for(lambda: metric(broken_peer.service, "cluster_rpc_replies_dropped_total",
                                reason="unroutable") >= 1, 5, what="the reply counted as dropped")
        assert_still_serving(broken_peer)

    def test_duplicate_reply_is_harmless(self, broken_peer: BrokenPeerService) -> None:
        # contract §2: "Duplicate replies are harmless"; the second one is dropped.
        dropped = metric(broken_peer.service, "cluster_rpc_replies_dropped_total")
        outcome = namespaces(broken_peer.service, "fault-duplicate-1")
        assert outcome.status == 200, outcome
        assert "team-fault-duplicate-1" in {ns["name"] for ns in outcome.body["namespaces"]}
        wait_for(lambda: metric(broken_peer.service, "cluster_rpc_replies_dropped_total")
                 > dropped, 5, what="the duplicate counted as dropped")
        assert_still_serving(broken_peer)

    def test_nothing_logged_at_error_nor_any_reply_body(
            self, broken_peer: BrokenPeerService) -> None:
        agents = ["fault-malformed-2", "fault-wrong-shape-2", "fault-wrong-shape-list-2",
                  "fault-result-not-json-2", "fault-no-request-id-2", "fault-huge-2",
                  "fault-duplicate-2", "fault-error-2"]
        outcomes = run_together([partial(namespaces, broken_peer.service, a) for a in agents])
        assert all(o.status in (200, 502, 504) for o in outcomes), summary(outcomes)
        assert_still_serving(broken_peer)
        log = broken_peer.service.logs()
        errors = [line for line in log.splitlines()
                  if '"level": "ERROR"' in line or '"level": "CRITICAL"' in line
                  or "[ERROR]" in line or "[CRITICAL]" in line or "Traceback" in line]
        assert not errors, "\n".join(line[:300] for line in errors)
        leaked = [fragment[:20] for fragment in BODY_FRAGMENTS if fragment in log]
        assert not leaked, f"reply body fragments in the log: {leaked}"
        failures = [r for r in broken_peer.service.json_logs()
                    if r.get("event") == "peer_error" and r.get("agent_id") == agents[3]]
        assert failures and failures[0]["peer_message"].endswith("this is not json")
        assert failures[0]["level"] == "WARNING"


@pytest.mark.timeout(60)
class TestRequestStormOnOneAgent:
    def test_identical_requests_share_one_rpc(
            self, prefix: str, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        storm, agent = 50, "slow-500-storm"
        service = service_factory(WEB_CONCURRENCY="1", GUNICORN_THREADS="64",
                                  MAX_INFLIGHT_RPCS="60", WEBSOCKET_TIMEOUT="10")
        warm_auth(service)
        queue = queue_env(prefix)["NAMESPACE_REQUEST_QUEUE"]
        consumed = peers.counters["requests_namespaces"]
        published = settled_metric(service, "cluster_rpc_published_total", queue=queue)

        outcomes = run_together([partial(namespaces, service, agent, 42)] * storm)

        rpcs = settled_metric(service, "cluster_rpc_published_total", queue=queue) - published
        seen_by_peer = peers.counters["requests_namespaces"] - consumed
        print(f"\n{storm} identical requests: {summary(outcomes)}; {rpcs:g} namespace RPCs "
              f"published, {seen_by_peer} seen by the peer")
        assert all(o.status == 200 for o in outcomes), summary(outcomes)
        for outcome in outcomes:
            assert outcome.body["agent_id"] == agent and outcome.body["cluster_id"] == 42
            assert f"team-{agent}" in {ns["name"] for ns in outcome.body["namespaces"]}
        assert 1 <= rpcs <= 5
        assert seen_by_peer == rpcs


# -- 8: beyond the list: the connection stays up, but the channel or a consumer is gone -----
