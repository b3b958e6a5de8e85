"""Large replies are parsed one at a time per worker; small ones never wait for that."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cluster_service.config import load_settings
from cluster_service.concurrency.large_replies import LARGE_REPLY_BYTES
from cluster_service.domain.clusters import ClusterOperations
from cluster_service.domain.operations import Operation
from cluster_service.domain.users import User
from cluster_service.rpc.client import RpcClient

from ...support.fake_transport import FakeTransport

USER = User(id=7, username="ana")


class Overlap:
    """A result parser that records how many parses ran at once."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()
        self.entered = threading.Barrier(2, timeout=1)

    def __call__(self, result: dict[str, Any]) -> Any:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            self.entered.wait()  # both in at once, if the bound lets them
        except threading.BrokenBarrierError:
            pass
        with self.lock:
            self.now -= 1
        return result["pods"]


def run_two(padding: int) -> int:
    settings = load_settings({"WEBSOCKET_TIMEOUT": "5"})
    transport = FakeTransport()
    transport.responders[settings.operation_request_queue] = lambda body: [(
        {"request_id": body["request_id"], "error": None,
         "result": {"pods": [], "padding": "x" * padding}}, 0)]
    ops = ClusterOperations(settings, RpcClient(transport, largest_reply_bytes=1 << 25))
    overlap = Overlap()
    op = Operation("pods", "get-pods", overlap, fields={"metadata.name": "name"})
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(ops.run, op, USER, f"agent-{n}", None) for n in (1, 2)]:
            assert future.result(10) == []
    return overlap.most


def test_large_replies_are_parsed_one_at_a_time() -> None:
    assert run_two(LARGE_REPLY_BYTES) == 1


def test_small_replies_are_parsed_at_once() -> None:
    assert run_two(100) == 2
