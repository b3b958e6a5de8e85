"""The existing KubeSage peers as they really are, against the real broker and gunicorn.

``tests/support/legacy_peers.py`` answers the way the real User Service consumer
and Onboarding Service handler do (fixed results queues, no correlation_id, no
headers, delivery_mode=2, ISO timestamps, error texts without error_code, no
consumer at all on the connected-agents queue). Each accepted legacy shape is
listed in docs/messaging.md ("Legacy reply shapes") with the test here that
pins it. Bounded: every wait has a deadline; loopback only.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pika
import pytest

from ..support.legacy_peers import LegacyPeers, legacy_properties, legacy_timestamp
from ..support.peers import delete_queues
from ..support.prometheus import metric_sum
from ..support.service import ServiceProcess, queue_env, wait_for

pytestmark = [pytest.mark.rabbitmq, pytest.mark.gunicorn]

USER = {"id": 7, "username": "ana", "email": "ana@example.com", "roles": "admin,dev",
        "is_active": True}
MISSING = "missing"
INACTIVE = {"inactive-false": False, "inactive-0": 0, "inactive-str-false": "false",
            "inactive-no": "no", "inactive-null": None, "inactive-list": [],
            "inactive-missing": MISSING, "inactive-str-true": "true", "inactive-1": 1}
NOT_THERE = {
    "gone-agent": "Failed to communicate with agent: No WebSocket connection found for agent "
                  "gone-agent",
    # The agent closed its socket after its previous answer: the reply names no agent.
    "closed-agent": "Failed to communicate with agent: received 1000 (OK); then sent 1000 (OK)",
}


def auth_answer(body: dict[str, Any]) -> dict[str, Any]:
    key = body["api_key"]
    reply: dict[str, Any] = {"request_id": body["request_id"], "timestamp": legacy_timestamp()}
    if key == "good-key":
        return {**reply, "valid": True, "user_data": USER,
                "message": "Authentication successful"}
    if key in INACTIVE:
        user = dict(USER, is_active=INACTIVE[key])
        if INACTIVE[key] == MISSING:
            del user["is_active"]
        return {**reply, "valid": True, "user_data": user}
    return {**reply, "valid": False, "error": "Invalid API key"}


def namespaces_answer(body: dict[str, Any]) -> dict[str, Any]:
    agent = body["agent_id"]
    reply = {"request_id": body["request_id"], "agent_id": agent, "timestamp": legacy_timestamp()}
    if agent in NOT_THERE:
        return {**reply, "result": None, "error": NOT_THERE[agent]}
    return {**reply, "error": None, "result": {
        "namespaces": [{"name": "default", "status": "Active",
                        "createdAt": "2024-01-01T12:00:00Z"}], "total_count": 1}}


def agents_answer(body: dict[str, Any]) -> dict[str, Any]:
    return {"request_id": body["request_id"], "agents": ["a-2", "a-1"], "error": None}


def start_legacy(prefix: str, answers: dict[str, Callable[..., Any]],
                 properties: Any = legacy_properties) -> LegacyPeers:
    names = queue_env(prefix)
    by_kind = {"auth": ("AUTH_REQUEST_QUEUE", "AUTH_RESULT_QUEUE"),
               "namespaces": ("NAMESPACE_REQUEST_QUEUE", "NAMESPACE_RESULT_QUEUE"),
               "agents": ("AGENTS_REQUEST_QUEUE", "AGENTS_RESULT_QUEUE")}
    return LegacyPeers({names[by_kind[k][0]]: f for k, f in answers.items()},
                       {names[req]: names[res] for req, res in by_kind.values()},
                       properties).start()


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A service whose peers are the legacy ones; nobody consumes the agents queue."""
    prefix = f"t-{uuid.uuid4().hex[:10]}-"
    peers = start_legacy(prefix, {"auth": auth_answer, "namespaces": namespaces_answer})
    service = ServiceProcess(tmp_path_factory.mktemp("legacy"), {
        **queue_env(prefix), "WEBSOCKET_TIMEOUT": "10", "AUTH_TIMEOUT": "10"})
    try:
        service.start()
        yield service, peers, prefix
    finally:
        service.stop()
        peers.stop()
        delete_queues(prefix)


def namespaces(service: ServiceProcess, key: str, agent: str = "agent-1") -> Any:
    return service.get("/namespaces", params={"agent_id": agent}, headers={"X-API-Key": key},
                       timeout=15)


class TestFailClosedIsActive:
    @pytest.mark.parametrize("key", sorted(INACTIVE))
    def test_anything_but_json_true_is_401(self, legacy: Any, key: str) -> None:
        service, peers, _ = legacy
        response = namespaces(service, key)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "authentication_failed"

    def test_json_true_is_admitted(self, legacy: Any) -> None:
        assert namespaces(legacy[0], "good-key").status_code == 200

    def test_a_non_boolean_is_logged_as_a_peer_fault_without_the_body(self, legacy: Any) -> None:
        service = legacy[0]
        assert namespaces(service, "inactive-null").status_code == 401
        faults = wait_for(lambda: [r for r in service.json_logs()
                                   if r.get("event") == "peer_fault"], 10, what="peer_fault")
        assert all("ana@example.com" not in str(r) for r in faults)


class TestLegacyNotConnectedTexts:
    @pytest.mark.parametrize("agent", sorted(NOT_THERE))
    def test_is_404_agent_not_connected(self, legacy: Any, agent: str) -> None:
        """Old code: 502 agent_error for both texts."""
        response = namespaces(legacy[0], "good-key", agent)
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "agent_not_connected"
        assert agent in response.json()["message"]


class TestNobodyConsumes:
    def test_agents_queue_without_consumer_is_503_at_once(self, legacy: Any) -> None:
        """Old code: 504 after WEBSOCKET_TIMEOUT (here 10 s; 30 s by default)."""
        service, _, prefix = legacy
        queue = queue_env(prefix)["AGENTS_REQUEST_QUEUE"]
        assert namespaces(service, "good-key").status_code == 200  # also caches the key
        for _ in range(5):
            started = time.monotonic()
            response = service.get("/agents/connected", headers={"X-API-Key": "good-key"},
                                   timeout=15)
            took = time.monotonic() - started
            assert response.status_code == 503, response.text
            body = response.json()
            assert body["error"] == "service_unavailable"
            assert "Onboarding Service" in body["message"]
            assert response.headers["Retry-After"]
            assert took < 1.0, took
            # ... while the namespaces queue, which has a consumer, keeps working
            assert namespaces(service, "good-key").status_code == 200
        assert service.get("/ready").status_code == 200  # about our own connection only
        missing = [r for r in service.json_logs() if r.get("event") == "peer_missing"]
        # The legacy Onboarding Service consumes neither the agents nor the operations queue.
        operations = queue_env(prefix)["OPERATION_REQUEST_QUEUE"]
        assert {r["queue"] for r in missing} == {queue, operations}
        assert {r["peer"] for r in missing} == {"Onboarding Service"}
        wait_for(lambda: metric_sum(service.get("/metrics").text,
                                    "cluster_rpc_duration_seconds_count", queue=queue,
                                    outcome="no_consumer") >= 5, 5, what="5 no_consumer counted")


class TestReplyProperties:
    """Each legacy trait of the real peers' replies, alone, and all at once."""

    @staticmethod
    def modern(request: Any) -> pika.BasicProperties:
        return pika.BasicProperties(content_type="application/json",
                                    correlation_id=request.correlation_id,
                                    headers={"x-request-id": "peer"}, delivery_mode=1)

    @pytest.mark.parametrize("trait", ["correlation_id_unset", "no_headers", "persistent",
                                       "iso_timestamp", "all_at_once"])
    def test_a_reply_with_it_is_accepted(self, tmp_path: Path, prefix: str,
                                         service_factory: Callable[..., ServiceProcess],
                                         trait: str) -> None:
        def properties(request: Any) -> pika.BasicProperties:
            if trait == "all_at_once":
                return legacy_properties(request)
            kept = self.modern(request)
            if trait == "correlation_id_unset":
                kept.correlation_id = None
            elif trait == "no_headers":
                kept.headers = None
            elif trait == "persistent":
                kept.delivery_mode = 2
            return kept

        def with_timestamp(answer: Callable[..., Any]) -> Callable[..., Any]:
            def wrapped(body: dict[str, Any]) -> Any:
                reply = answer(body)
                if trait not in ("iso_timestamp", "all_at_once"):
                    reply["timestamp"] = time.time()
                return reply
            return wrapped

        peers = start_legacy(prefix, {"auth": with_timestamp(auth_answer),
                                      "namespaces": with_timestamp(namespaces_answer),
                                      "agents": agents_answer}, properties)
        try:
            service = service_factory(WEB_CONCURRENCY="1")
            response = namespaces(service, "good-key")
            assert response.status_code == 200, response.text
            assert [ns["name"] for ns in response.json()["namespaces"]] == ["default"]
            agents = service.get("/agents/connected", headers={"X-API-Key": "good-key"})
            assert agents.status_code == 200
            assert agents.json()["connected_agents"] == ["a-1", "a-2"]
        finally:
            peers.stop()


def test_a_peer_that_comes_back_is_used_again_within_seconds(
        prefix: str, service_factory: Callable[..., ServiceProcess]) -> None:
    peers = start_legacy(prefix, {"auth": auth_answer})
    late: LegacyPeers | None = None
    try:
        service = service_factory()
        first = service.get("/agents/connected", headers={"X-API-Key": "good-key"})
        assert first.status_code == 503 and "Onboarding Service" in first.json()["message"]
        late = start_legacy(prefix, {"agents": agents_answer})
        back = time.monotonic()
        wait_for(lambda: service.get("/agents/connected", headers={"X-API-Key": "good-key"},
                                     timeout=10).status_code == 200,
                 timeout=10, interval=0.2, what="the agents peer to be used again")
        assert time.monotonic() - back < 5
        assert any(r.get("event") == "peer_back" for r in service.json_logs())
    finally:
        peers.stop()
        if late is not None:
            late.stop()


def test_no_user_service_is_503_at_once_naming_it(
        prefix: str, service_factory: Callable[..., ServiceProcess]) -> None:
    service = service_factory()
    started = time.monotonic()
    response = namespaces(service, "good-key")
    assert response.status_code == 503, response.text
    assert "User Service" in response.json()["message"]
    assert time.monotonic() - started < 1.0
