"""Graceful shutdown: SIGTERM finishes in-flight requests and closes the broker cleanly.

See this folder's ``__init__.py`` for how every fault test runs.
"""

from __future__ import annotations

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Callable

import pytest

from ...support.faults import (BrokerLog, namespaces, pids_with, start_together, summary, warm_auth)
from ...support.prometheus import metric
from ...support.service import ServiceProcess, wait_for


pytestmark = [pytest.mark.fault, pytest.mark.rabbitmq, pytest.mark.gunicorn]


@pytest.mark.timeout(60)
class TestGracefulShutdown:
    def test_sigterm_finishes_in_flight_requests_and_closes_broker_cleanly(
            self, peers: Any, service_factory: Callable[..., ServiceProcess]) -> None:
        auth_timeout, websocket_timeout = 2, 5
        graceful_timeout = auth_timeout + websocket_timeout + 5   # as gunicorn.conf.py derives it
        service = service_factory(WEB_CONCURRENCY="2", AUTH_TIMEOUT=str(auth_timeout),
                                  WEBSOCKET_TIMEOUT=str(websocket_timeout))
        pids = warm_auth(service)
        broker_log = BrokerLog()
        in_flight = 6

        with ThreadPoolExecutor(in_flight) as pool:
            # distinct agents: the per-agent bound (3) must not refuse any of them
            futures = start_together(pool, [partial(namespaces, service, f"slow-1500-g{i}")
                                            for i in range(in_flight)])
            wait_for(lambda: metric(service, "cluster_rpc_inflight") >= in_flight, 1.2,
                     interval=0.02, what=f"{in_flight} RPCs in flight")
            terminated = time.monotonic()
            service.signal(signal.SIGTERM)
            outcomes = [future.result() for future in futures]
        assert service.proc is not None
        code = service.proc.wait(graceful_timeout + 5)
        exited = time.monotonic() - terminated
        print(f"\nSIGTERM with {in_flight} in flight: {summary(outcomes)}; "
              f"master exited after {exited:.2f}s (graceful_timeout {graceful_timeout}s)")

        assert all(o.status == 200 for o in outcomes), summary(outcomes)
        assert all(o.ended > terminated for o in outcomes), "the requests were not in flight"
        assert code == 0
        assert exited < graceful_timeout
        assert pids <= pids_with(service, event="broker_closed"), service.logs()[-3000:]
        assert not pids_with(service, event="broker_disconnected")

        if broker_log.readable:
            host = socket.gethostname()
            names = {pid: f"cluster_service {host} pid {pid}" for pid in pids}
            wait_for(lambda: all(broker_log.closings(name) for name in names.values()), 10,
                     what="the broker logging each worker's connection closing")
            for name in names.values():
                for entry in broker_log.closings(name):
                    assert "unexpectedly" not in entry and "abrupt" not in entry, entry
                    assert "[info]" in entry, entry
