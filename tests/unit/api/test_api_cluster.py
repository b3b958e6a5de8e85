"""The cluster endpoints over a fake broker: success bodies and every row of the error table."""

from __future__ import annotations

import json
import re
from typing import Any, Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ...conftest import API_KEY, BASE, VALID_USER
from ...support.fake_transport import FakeTransport

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
NS_QUEUE = "cluster_namespace_requests"
AGENTS_QUEUE = "cluster_agents_requests"
AUTH_QUEUE = "cluster_auth_requests"
HEADERS = {"X-API-Key": API_KEY}
ERROR_KEYS = ["success", "error", "message", "request_id", "timestamp"]


def answer(body: Any) -> Callable[[dict[str, Any]], list[tuple[Any, float]]]:
    """A responder that answers every request with ``body`` (request_id filled in)."""

    def respond(request: dict[str, Any]) -> list[tuple[Any, float]]:
        if isinstance(body, bytes):
            return [(body, 0)]
        return [({"request_id": request["request_id"], **body}, 0)]

    return respond


def silent(request: dict[str, Any]) -> None:
    return None


def get_namespaces(client: FlaskClient, agent_id: str = "agent-1",
                   headers: dict[str, str] | None = None, **query: str) -> Any:
    return client.get(f"{BASE}/namespaces", query_string={"agent_id": agent_id, **query},
                      headers=HEADERS if headers is None else headers)


def assert_error(response: Any, status: int, error: str) -> dict[str, Any]:
    body = response.get_json()
    assert response.status_code == status, body
    assert list(body) == ERROR_KEYS
    assert body["success"] is False and body["error"] == error
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert TIMESTAMP.match(body["timestamp"])
    assert API_KEY not in response.get_data(as_text=True)
    if status == 503:
        assert int(response.headers["Retry-After"]) > 0
    return body  # type: ignore[no-any-return]


class TestNamespaces:
    def test_success_body_is_exactly_the_readme_shape(self, client: FlaskClient) -> None:
        response = get_namespaces(client, "agent-1", cluster_id="123")
        assert response.status_code == 200
        body = response.get_json()
        assert list(body) == ["success", "agent_id", "cluster_id", "namespaces", "total_count",
                              "message", "timestamp"]
        assert body["success"] is True
        assert body["agent_id"] == "agent-1"
        assert body["cluster_id"] == 123
        assert body["namespaces"] == [
            {"name": "default", "status": "Active", "created_at": "2024-01-01T12:00:00Z",
             "labels": {"kubernetes.io/metadata.name": "default"}, "annotations": {}},
            {"name": "team-agent-1", "status": "Unknown", "created_at": None, "labels": {},
             "annotations": {}}]
        assert body["total_count"] == 2
        assert body["message"] == "Successfully retrieved namespaces from cluster"
        assert TIMESTAMP.match(body["timestamp"])

    def test_absent_cluster_id_is_null(self, client: FlaskClient) -> None:
        assert get_namespaces(client).get_json()["cluster_id"] is None

    def test_the_user_travels_with_the_request(self, client: FlaskClient,
                                               transport: FakeTransport) -> None:
        get_namespaces(client, "agent-7", cluster_id="9")
        [request] = [p for p in transport.published if p.queue == NS_QUEUE]
        body = json.loads(request.body)
        assert body["user"] == {"id": VALID_USER["id"], "username": VALID_USER["username"]}
        assert (body["agent_id"], body["cluster_id"]) == ("agent-7", 9)

    def test_request_id_travels_in_every_amqp_message(self, client: FlaskClient,
                                                      transport: FakeTransport) -> None:
        response = get_namespaces(client, headers={**HEADERS, "X-Request-ID": "trace-123"})
        assert response.headers["X-Request-ID"] == "trace-123"
        assert {p.queue for p in transport.published} == {AUTH_QUEUE, NS_QUEUE}
        assert {p.request_id for p in transport.published} == {"trace-123"}

    def test_second_request_reuses_the_cached_key(self, client: FlaskClient,
                                                  transport: FakeTransport) -> None:
        get_namespaces(client)
        get_namespaces(client)
        assert transport.count(AUTH_QUEUE) == 1
        assert transport.count(NS_QUEUE) == 2


class TestConnectedAgents:
    def test_success_body_lists_sorted_unique_ids(self, client: FlaskClient) -> None:
        response = client.get(f"{BASE}/agents/connected", headers=HEADERS)
        assert response.status_code == 200
        body = response.get_json()
        assert list(body) == ["success", "connected_agents", "total_count", "timestamp"]
        assert body["connected_agents"] == ["a", "b"]
        assert body["total_count"] == 2
        assert TIMESTAMP.match(body["timestamp"])

    @pytest.mark.parametrize("reply,status,error", [
        ({"agents": None, "error": "registry unavailable"}, 502, "agent_error"),
        (b"[not json", 502, "agent_error"),
        (None, 504, "agent_timeout"),
    ], ids=["error", "malformed", "silent"])
    def test_errors(self, make_app: Callable[..., Flask], transport: FakeTransport,
                    reply: Any, status: int, error: str) -> None:
        transport.responders[AGENTS_QUEUE] = silent if reply is None else answer(reply)
        client = make_app(WEBSOCKET_TIMEOUT="0.3").test_client()
        assert_error(client.get(f"{BASE}/agents/connected", headers=HEADERS), status, error)

    def test_needs_a_key(self, client: FlaskClient, transport: FakeTransport) -> None:
        assert_error(client.get(f"{BASE}/agents/connected"), 401, "authentication_failed")
        assert transport.published == []


class TestAuthenticationErrors:
    @pytest.mark.parametrize("headers", [{}, {"X-API-Key": ""}, {"X-API-Key": "k" * 257},
                                         {"X-API-Key": "wrong-key"}],
                             ids=["missing", "empty", "too-long", "rejected"])
    def test_401(self, client: FlaskClient, headers: dict[str, str]) -> None:
        body = assert_error(get_namespaces(client, headers=headers), 401,
                            "authentication_failed")
        assert body["message"] == "Authentication failed"

    def test_inactive_user_is_401(self, client: FlaskClient, transport: FakeTransport) -> None:
        transport.responders[AUTH_QUEUE] = answer(
            {"valid": True, "user_data": dict(VALID_USER, is_active=False)})
        assert_error(get_namespaces(client), 401, "authentication_failed")
        assert transport.count(NS_QUEUE) == 0

    def test_auth_backend_error_without_fallback_is_503(self, client: FlaskClient,
                                                        transport: FakeTransport) -> None:
        transport.responders[AUTH_QUEUE] = answer({"error": "Authentication error: db"})
        assert_error(get_namespaces(client), 503, "service_unavailable")

    def test_auth_timeout_without_fallback_is_503(self, make_app: Callable[..., Flask],
                                                  transport: FakeTransport) -> None:
        transport.responders[AUTH_QUEUE] = silent
        client = make_app(AUTH_TIMEOUT="0.2").test_client()
        assert_error(get_namespaces(client), 503, "service_unavailable")


class TestAgentErrors:
    @pytest.mark.parametrize("reply,status,error", [
        ({"result": None, "error": "denied", "error_code": "forbidden"}, 403, "forbidden"),
        ({"result": None, "error": "gone", "error_code": "agent_not_connected"}, 404,
         "agent_not_connected"),
        ({"result": None, "error": "Agent returned an error: boom"}, 502, "agent_error"),
        ({"result": None, "error": "x", "error_code": "whatever"}, 502, "agent_error"),
        ({"result": {"error": True, "message": "cannot list"}, "error": None}, 502,
         "agent_error"),
        (b"{this is not json", 502, "agent_error"),
        ({"result": {"total_count": 0}, "error": None}, 502, "agent_error"),
        ({"result": "not json", "error": None}, 502, "agent_error"),
        ({"result": None, "error": "slow", "error_code": "agent_timeout"}, 504,
         "agent_timeout"),
    ], ids=["forbidden", "not-connected", "error", "unknown-code", "result-error",
            "malformed", "wrong-shape", "result-not-json", "timeout-code"])
    def test_error_reply_row(self, client: FlaskClient, transport: FakeTransport,
                             reply: Any, status: int, error: str) -> None:
        transport.responders[NS_QUEUE] = answer(reply)
        body = assert_error(get_namespaces(client, "agent-x"), status, error)
        if status == 502:
            assert body["message"].startswith("Failed to communicate with agent")
            assert "boom" not in body["message"]
        if status == 404:
            assert "agent-x" in body["message"]

    def test_no_reply_is_504_after_websocket_timeout(self, make_app: Callable[..., Flask],
                                                     transport: FakeTransport) -> None:
        transport.responders[NS_QUEUE] = silent
        client = make_app(WEBSOCKET_TIMEOUT="0.3").test_client()
        body = assert_error(get_namespaces(client), 504, "agent_timeout")
        assert body["message"] == "Agent did not respond within 0.3 seconds"

    def test_broker_down_is_503_at_once(self, make_app: Callable[..., Flask],
                                        transport: FakeTransport) -> None:
        transport.initially_connected = False
        client = make_app().test_client()
        assert_error(get_namespaces(client), 503, "service_unavailable")
        assert_error(client.get(f"{BASE}/agents/connected", headers=HEADERS), 503,
                     "service_unavailable")
        assert transport.published == []

    def test_broker_down_shows_in_ready_but_not_in_health(self, make_app: Callable[..., Flask],
                                                          transport: FakeTransport) -> None:
        transport.initially_connected = False
        client = make_app().test_client()
        ready = client.get(f"{BASE}/ready")
        assert ready.status_code == 503
        assert ready.get_json()["status"] == "not_ready"
        assert client.get(f"{BASE}/health").status_code == 200

    @pytest.mark.parametrize("query,field", [
        ({}, "agent_id"),
        ({"agent_id": "bad id!"}, "agent_id"),
        ({"agent_id": "a" * 129}, "agent_id"),
        ({"agent_id": "a", "cluster_id": "-1"}, "cluster_id"),
        ({"agent_id": "a", "cluster_id": str(2 ** 63)}, "cluster_id"),
    ])
    def test_invalid_input_is_400_and_nothing_is_sent_to_the_agent(
            self, client: FlaskClient, transport: FakeTransport, query: dict[str, str],
            field: str) -> None:
        response = client.get(f"{BASE}/namespaces", query_string=query, headers=HEADERS)
        body = assert_error(response, 400, "invalid_request")
        assert field in body["message"]
        assert transport.count(NS_QUEUE) == 0


class TestWorkerBound:
    """MAX_INFLIGHT_RPCS bounds RPCs waiting for a reply; a call past it waits in line."""

    def test_a_call_past_the_rpc_slots_waits_for_one_instead_of_503(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from ...support.service import wait_for

        transport.responders["cluster_namespace_requests"] = lambda body: [
            ({"request_id": body["request_id"], "agent_id": body["agent_id"], "error": None,
              "result": {"namespaces": []}}, 0.6)]
        app = make_app(MAX_INFLIGHT_RPCS="2", WEBSOCKET_TIMEOUT="5")
        rpc = app.extensions["cluster_service"].rpc
        app.test_client().get(f"{BASE}/agents/connected", headers={"X-API-Key": API_KEY})
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(get_namespaces, app.test_client(), f"agent-{i}")
                       for i in range(3)]
            wait_for(lambda: rpc._slots.held == 2 and rpc._slots.waiting == 1, 2,
                     what="two RPCs in flight and one call in line")
            assert [f.result(10).status_code for f in futures] == [200, 200, 200]
        assert rpc._slots.held == 0

    def test_the_slot_is_released_after_every_outcome(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        transport.responders["cluster_namespace_requests"] = silent
        app = make_app(WEBSOCKET_TIMEOUT="0.2")
        rpc = app.extensions["cluster_service"].rpc
        client = app.test_client()
        assert client.get(f"{BASE}/agents/connected",
                          headers={"X-API-Key": API_KEY}).status_code == 200
        assert_error(get_namespaces(client, "agent-silent"), 504, "agent_timeout")
        assert client.get(f"{BASE}/agents/connected",
                          headers={"X-API-Key": "wrong"}).status_code == 401
        assert rpc._slots.held == 0
