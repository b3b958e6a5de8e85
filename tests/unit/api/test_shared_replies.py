"""Requests that share a single flight share its body too: dumped and serialised once."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest
from flask import Flask

from cluster_service.api import operations
from cluster_service.api.extension import services

from ...conftest import API_KEY, BASE, namespaces_reply
from ...support.fake_transport import FakeTransport
from ...support.service import wait_for

NS_QUEUE = "cluster_namespace_requests"


def waiting_followers(app: Flask) -> int:
    with app.app_context():
        flights = services().clusters._flights._flights
    return sum(len(f.done._cond._waiters) for f in list(flights.values()))  # type: ignore


@pytest.mark.parametrize("queries", [["agent_id=demo-agent-1"] * 8,
                                     ["agent_id=demo-agent-1"] * 4
                                     + ["agent_id=demo-agent-1&limit=1"] * 4])
def test_followers_get_the_leaders_bytes(make_app: Callable[..., Flask],
                                         transport: FakeTransport,
                                         monkeypatch: pytest.MonkeyPatch,
                                         queries: list[str]) -> None:
    asked: list[dict[str, Any]] = []
    transport.responders[NS_QUEUE] = lambda body: asked.append(body) or None  # held back
    rendered: list[str] = []
    body_of = operations._body

    def counting(route: operations.Route, query: Any, *args: Any) -> bytes:
        rendered.append(route.path)
        return body_of(route, query, *args)

    monkeypatch.setattr(operations, "_body", counting)
    app = make_app()

    def get(query: str) -> tuple[int, bytes]:
        response = app.test_client().get(f"{BASE}/namespaces?{query}",
                                         headers={"X-API-Key": API_KEY})
        return response.status_code, response.get_data()

    with ThreadPoolExecutor(max_workers=len(queries)) as pool:
        futures = [pool.submit(get, query) for query in queries]
        wait_for(lambda: waiting_followers(app) == len(queries) - 1, 10,
                 what="every request but the leader waiting on its flight")
        (request,) = asked
        transport.deliver(transport.reply_queue, json.dumps(
            {"request_id": request["request_id"], **namespaces_reply("demo-agent-1")}).encode(),
            request["request_id"])
        answers = [future.result(10) for future in futures]

    assert transport.count(NS_QUEUE) == 1
    assert {status for status, _ in answers} == {200}
    bodies = {query: {body for (_, body), q in zip(answers, queries) if q == query}
              for query in queries}
    assert all(len(found) == 1 for found in bodies.values())  # byte-identical per query
    assert len(rendered) == len(bodies)  # one dump and one serialisation per query
    for query, (body,) in bodies.items():
        assert json.loads(body)["agent_id"] == "demo-agent-1"
