"""A broker with several nodes: a black-holed node, a node lost, a node shut down (320).

``RABBITMQ_HOST`` lists the nodes; here they are paths to the shared broker,
one of them through a :class:`TcpProxy` the test can freeze (a black hole:
accepts, never speaks) or cut. See this folder's ``__init__.py``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest

from ...support.faults import HEALTHY_AGENT, call, namespaces, pids_with
from ...support.prometheus import metric
from ...support.rabbitmq_admin import close_connection, service_connections
from ...support.service import ServiceProcess, wait_for
from ...support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.fault, pytest.mark.rabbitmq, pytest.mark.gunicorn]

BROKER = "127.0.0.1:5672"
CONNECT_TIMEOUT = 1.0


def on_node(service: ServiceProcess, node: str) -> bool:
    """Whether a /ready answer says the serving worker is on ``node`` and serving."""
    ready = call(service, "/ready")
    return ready.status == 200 and ready.body["checks"].get("rabbitmq_node") == node \
        and namespaces(service, HEALTHY_AGENT).status == 200


@pytest.mark.timeout(60)
class TestNodeList:
    def test_a_black_holed_first_node_costs_one_connect_timeout(
            self, proxy: TcpProxy, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        proxy.freeze()  # accepts connections, never answers
        started = time.monotonic()
        service = service_factory(WEB_CONCURRENCY="1",
                                  RABBITMQ_HOST=f"127.0.0.1:{proxy.port},{BROKER}",
                                  RABBITMQ_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT))
        ready_after = time.monotonic() - started
        print(f"\nready {ready_after:.2f}s after start with the first node black-holed")
        assert on_node(service, BROKER)
        records = service.json_logs()
        failed = [r for r in records if r.get("event") == "broker_unreachable"]
        assert [r["broker"] for r in failed] == [f"127.0.0.1:{proxy.port}"]
        # pika's own defaults would spend 10-15 s on the black hole; gunicorn's start
        # and the first worker's import take about two seconds on a busy machine.
        assert ready_after < CONNECT_TIMEOUT + 5

    def test_a_lost_node_is_replaced_by_the_next_within_seconds(
            self, proxy: TcpProxy, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        through = f"127.0.0.1:{proxy.port}"
        service = service_factory(RABBITMQ_HOST=f"{through},{BROKER}",
                                  RABBITMQ_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT))
        pids = service.worker_pids()
        assert on_node(service, through)
        proxy.close()  # the path to the first node is cut, and stays refused
        cut = time.monotonic()
        wait_for(lambda: metric(service, "cluster_broker_reconnects_total", node=BROKER)
                 >= len(pids), 5, what="every worker reconnected to the second node")
        wait_for(lambda: on_node(service, BROKER), 5, what="serving on the second node")
        print(f"\nserving on the second node {time.monotonic() - cut:.2f}s after the cut")
        assert service.worker_pids() == pids

    def test_a_node_shutting_down_320_is_a_loss_like_any_other(
            self, peers: Any, service_factory: Callable[..., ServiceProcess]) -> None:
        service = service_factory(WEB_CONCURRENCY="1", RABBITMQ_HOST=BROKER)
        (pid,) = service.worker_pids()
        connection = wait_for(lambda: service_connections().get(pid), 10,
                              what="the worker's connection listed")
        close_connection(connection, "node shutting down")  # CONNECTION_FORCED, 320
        wait_for(lambda: metric(service, "cluster_broker_reconnects_total", node=BROKER) >= 1,
                 10, what="the worker reconnected")
        wait_for(lambda: on_node(service, BROKER), 5, what="serving again")
        assert pid in pids_with(service, event="broker_disconnected",
                                error_type="ConnectionClosedByBroker")
        assert service.worker_pids() == {pid}
