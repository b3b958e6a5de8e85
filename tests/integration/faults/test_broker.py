"""Broker faults: down at start-up, lost under load, a silent partition,
a channel closed or a consumer cancelled while the connection stays up.

See this folder's ``__init__.py`` for how every fault test runs.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Callable

import pytest

from ...support.faults import (HEALTHY_AGENT, Outcome, RECOVERY_BOUND, all_connected,
                               assert_service_unavailable, broker_admin, call, namespaces,
                               pids_with, run_together, start_together, summary, through, warm_auth)
from ...support.prometheus import metric
from ...support.service import ServiceProcess, queue_env, wait_for
from ...support.tcp_proxy import TcpProxy


pytestmark = [pytest.mark.fault, pytest.mark.rabbitmq, pytest.mark.gunicorn]


@pytest.mark.timeout(60)
class TestBrokerDownAtStartUp:
    def test_workers_serve_probes_then_recover_without_restart(
            self, proxy: TcpProxy, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        proxy.close()
        service = service_factory(ready=False, **through(proxy))
        pids = service.worker_pids()
        assert len(pids) == 2
        wait_for(lambda: pids <= pids_with(service, event="broker_unreachable"), 10,
                 what="every worker's first connection attempt to fail")

        for _ in range(6):
            health = call(service, "/health")
            assert health.status == 200 and health.body["status"] == "healthy", health
            ready = call(service, "/ready")
            assert ready.status == 503, ready
            assert ready.body["status"] == "not_ready"
            assert ready.body["checks"] == {"rabbitmq": "unavailable"}
            refused = namespaces(service, HEALTHY_AGENT)
            assert_service_unavailable(refused)
            # Known to be unreachable: fail at once, never wait for a broker that is not there.
            assert refused.elapsed < 1.0, refused.elapsed

        proxy.open()
        opened = time.monotonic()
        wait_for(lambda: all_connected(service, pids) and
                 namespaces(service, HEALTHY_AGENT).status == 200,
                 RECOVERY_BOUND, what="every worker reconnected and serving")
        recovered = time.monotonic() - opened
        print(f"\nrecovered {recovered:.2f}s after the broker came back")
        outcomes = run_together([partial(namespaces, service, HEALTHY_AGENT, i)
                                 for i in range(8)])
        assert all(o.status == 200 for o in outcomes), summary(outcomes)
        assert all(call(service, "/ready").status == 200 for _ in range(6))
        assert service.worker_pids() == pids, "a worker was restarted"


@pytest.mark.timeout(90)
class TestBrokerConnectionLostUnderLoad:
    IN_FLIGHT = 50

    def test_in_flight_requests_fail_fast_and_service_recovers(
            self, proxy: TcpProxy, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        # The kernel does not spread connections evenly: the default threads let one
        # worker hold all 50 requests truly in flight.
        service = service_factory(WEB_CONCURRENCY="2", MAX_INFLIGHT_PER_AGENT="64",
                                  WEBSOCKET_TIMEOUT="10", **through(proxy))
        pids = warm_auth(service)

        with ThreadPoolExecutor(self.IN_FLIGHT) as pool:
            futures = start_together(pool, [
                partial(namespaces, service, "slow-5000-a", cluster_id=i, timeout=20)
                for i in range(self.IN_FLIGHT)])
            wait_for(lambda: metric(service, "cluster_rpc_inflight") >= self.IN_FLIGHT, 4,
                     what=f"{self.IN_FLIGHT} RPCs in flight")
            cut = time.monotonic()
            proxy.close()
            outcomes = [future.result() for future in futures]

        late = [round(o.ended - cut, 2) for o in outcomes if o.ended - cut > 1.0]
        print(f"\nafter the cut: {summary(outcomes)}; slowest ended "
              f"{max(o.ended for o in outcomes) - cut:.3f}s after the cut")
        assert all(o.status == 503 for o in outcomes), summary(outcomes)
        for outcome in outcomes:
            assert_service_unavailable(outcome)
        assert not late, f"requests ended more than 1 s after the cut: {late}"
        assert pids <= pids_with(service, event="broker_disconnected")

        proxy.open()
        wait_for(lambda: all_connected(service, pids), RECOVERY_BOUND,
                 what="every worker reconnected")
        outcomes = run_together([partial(namespaces, service, HEALTHY_AGENT, i)
                                 for i in range(8)])
        assert all(o.status == 200 for o in outcomes), summary(outcomes)
        assert service.worker_pids() == pids, "a worker was restarted"


# -- 2b: beyond the list: a silent partition (no reset, no FIN) -------------------------------


@pytest.mark.timeout(60)
class TestSilentNetworkPartition:
    HEARTBEAT, WEBSOCKET_TIMEOUT = 2, 2.0

    def test_requests_time_out_until_the_heartbeat_notices_then_recover(
            self, proxy: TcpProxy, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        service = service_factory(WEB_CONCURRENCY="1", RABBITMQ_HEARTBEAT=str(self.HEARTBEAT),
                                  WEBSOCKET_TIMEOUT=str(self.WEBSOCKET_TIMEOUT),
                                  **through(proxy))
        pids = warm_auth(service)
        # pika checks for received data every heartbeat + 5 s; two empty checks mean dead.
        detection_bound = 2 * (self.HEARTBEAT + 5) + self.WEBSOCKET_TIMEOUT + 1

        proxy.freeze()
        frozen = time.monotonic()
        during: list[Outcome] = []
        attempts = iter(range(10**6))

        def noticed() -> bool:
            during.append(namespaces(service, HEALTHY_AGENT, next(attempts), timeout=10))
            return call(service, "/ready").status == 503

        wait_for(noticed, detection_bound, interval=0.2, what="the worker to notice the partition")
        noticed_after = time.monotonic() - frozen
        print(f"\npartition noticed after {noticed_after:.1f}s; meanwhile {summary(during)}")
        # Never a hang, never a 500: a timeout at WEBSOCKET_TIMEOUT, or 503 once noticed.
        for outcome in during:
            assert outcome.status in (503, 504), outcome
            assert outcome.elapsed <= self.WEBSOCKET_TIMEOUT * 1.1 + 0.5, outcome.elapsed
        assert pids <= pids_with(service, event="broker_disconnected")
        assert_service_unavailable(namespaces(service, HEALTHY_AGENT))

        proxy.thaw()
        wait_for(lambda: namespaces(service, HEALTHY_AGENT, next(attempts)).status == 200,
                 RECOVERY_BOUND, what="the worker serving again after the partition")
        assert service.worker_pids() == pids, "the worker was restarted"


@pytest.mark.timeout(60)
class TestChannelLostWhileConnectionStaysUp:
    """The broker can close a channel, or cancel a consumer, without closing the connection.

    A worker in that state cannot serve cluster calls; it must notice, say so
    (log, ``/ready``) and reopen, as it does when the whole connection drops.
    """

    def test_channel_closed_by_broker_is_noticed_and_reopened(
            self, prefix: str, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        env = queue_env(prefix)
        service = service_factory(WEB_CONCURRENCY="1", WEBSOCKET_TIMEOUT="1")
        warm_auth(service)

        def provoke(channel: Any) -> None:
            # A reply nobody waits for, on a fixed results queue, is forwarded to the reply
            # exchange; with the exchange gone, the broker closes the channel (404).
            channel.exchange_delete(env["REPLY_EXCHANGE"])
            channel.basic_publish("", env["NAMESPACE_RESULT_QUEUE"],
                                  json.dumps({"request_id": str(uuid.uuid4())}))

        broker_admin(provoke)
        wait_for(lambda: metric(service, "cluster_rpc_replies_rerouted_total") >= 1, 5,
                 what="the stray reply forwarded to the missing exchange")
        attempts = iter(range(10**6))
        wait_for(lambda: namespaces(service, HEALTHY_AGENT, next(attempts)).status == 200
                 and call(service, "/ready").status == 200, RECOVERY_BOUND,
                 what="the worker serving again on a new channel")
        assert pids_with(service, event="broker_disconnected"), "the loss was never logged"

    def test_consumer_cancelled_by_broker_is_noticed_and_resumed(
            self, prefix: str, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        env = queue_env(prefix)
        service = service_factory(WEB_CONCURRENCY="1", WEBSOCKET_TIMEOUT="1")
        warm_auth(service)
        peers.set_reply_style("results")   # the legacy peers answer on the fixed queue
        assert namespaces(service, HEALTHY_AGENT, 1).status == 200

        broker_admin(lambda channel: channel.queue_delete(env["NAMESPACE_RESULT_QUEUE"]))
        attempts = iter(range(10, 10**6))
        wait_for(lambda: namespaces(service, HEALTHY_AGENT, next(attempts)).status == 200,
                 RECOVERY_BOUND, what="the results queue declared and consumed again")
        assert pids_with(service, event="broker_disconnected"), "the loss was never logged"
