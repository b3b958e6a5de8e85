"""Cluster operations: the request bodies, and every reply shape mapped to a result or error."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import pytest

from cluster_service.domain.users import User
from cluster_service.domain.clusters import ClusterOperations
from cluster_service.config import load_settings
from cluster_service.errors import (AgentNotConnected, AgentTimeout, AgentUnresponsive,
                                    Forbidden, RemoteError, RpcTimeout, Saturated)
from cluster_service.rpc.client import RpcClient
from cluster_service.rpc.transport import Routing

from ...support.fake_transport import FakeTransport
from ...support.recording import RecordingObserver
from ...support.service import wait_for

NS_QUEUE = "cluster_namespace_requests"
AGENTS_QUEUE = "cluster_agents_requests"
USER = User(id=7, username="ana")
NS = {"name": "default", "status": "Active", "createdAt": "2024-01-01T12:00:00Z",
      "labels": {"a": "b"}, "annotations": {"c": "d"}}


class NotYetConnected(FakeTransport):
    """A transport whose first connection attempt is still in progress."""

    def start(self, on_reply: Callable[..., Routing],
              on_connection_change: Callable[..., None]) -> None:
        self._on_reply, self._on_change = on_reply, on_connection_change


class Peer:
    """Answers every request on a queue with one prepared body (request_id filled in)."""

    def __init__(self, transport: FakeTransport, queue: str) -> None:
        self.reply: Any = None
        self.silent = False
        transport.responders[queue] = self

    def __call__(self, body: dict[str, Any]) -> list[tuple[Any, float]] | None:
        if self.silent:
            return None
        if isinstance(self.reply, bytes):
            return [(self.reply, 0)]
        return [({"request_id": body["request_id"], **self.reply}, 0)]


class Harness:
    def __init__(self, **env: str) -> None:
        self.settings = load_settings({"WEBSOCKET_TIMEOUT": "2", **env})
        self.transport = FakeTransport()
        self.rpc = RpcClient(self.transport, fixed_queues=self.settings.result_queues)
        self.observer = RecordingObserver()
        self.ops = ClusterOperations(self.settings, self.rpc, self.observer)
        self.namespaces = Peer(self.transport, NS_QUEUE)
        self.agents = Peer(self.transport, AGENTS_QUEUE)

    def list_namespaces(self, reply: Any, agent_id: str = "agent-1",
                        cluster_id: int | None = 123) -> list[dict[str, Any]]:
        self.namespaces.reply = reply
        return self.ops.list_namespaces(USER, agent_id, cluster_id)

    def connected_agents(self, reply: Any) -> list[str]:
        self.agents.reply = reply
        return self.ops.connected_agents(USER)


@pytest.fixture
def h() -> Harness:
    return Harness()


def ok(result: Any) -> dict[str, Any]:
    return {"agent_id": "agent-1", "result": result, "error": None,
            "timestamp": "2024-01-01T12:00:00.000Z"}


class TestNamespacesRequest:
    def test_request_body_is_as_the_contract_says(self, h: Harness) -> None:
        h.list_namespaces(ok({"namespaces": []}), cluster_id=123)
        request = h.transport.published[0]
        body = json.loads(request.body)
        assert request.queue == h.settings.namespace_request_queue
        assert request.expiration_ms == 2000
        assert {k: v for k, v in body.items() if k not in ("request_id", "timestamp")} == {
            "command": "get-namespaces", "agent_id": "agent-1", "cluster_id": 123,
            "cluster_config": {"cluster_id": 123, "include_details": True},
            "user": {"id": 7, "username": "ana"}}

    def test_absent_cluster_id_is_null(self, h: Harness) -> None:
        h.list_namespaces(ok({"namespaces": []}), cluster_id=None)
        body = json.loads(h.transport.published[0].body)
        assert body["cluster_id"] is None
        assert body["cluster_config"]["cluster_id"] is None


class TestNamespacesReply:
    def test_full_namespace_is_mapped(self, h: Harness) -> None:
        assert h.list_namespaces(ok({"namespaces": [NS], "total_count": 1})) == [
            {"name": "default", "status": "Active", "created_at": "2024-01-01T12:00:00Z",
             "labels": {"a": "b"}, "annotations": {"c": "d"}}]

    def test_result_may_be_a_json_string(self, h: Harness) -> None:
        [namespace] = h.list_namespaces(ok(json.dumps({"namespaces": [NS]})))
        assert namespace["name"] == "default" and namespace["labels"] == {"a": "b"}

    def test_absent_fields_get_their_defaults(self, h: Harness) -> None:
        [namespace] = h.list_namespaces(ok({"namespaces": [{"name": "bare"}]}))
        assert namespace == {"name": "bare", "status": "Unknown", "created_at": None,
                             "labels": {}, "annotations": {}}

    def test_null_labels_and_empty_status_get_defaults(self, h: Harness) -> None:
        [namespace] = h.list_namespaces(ok({"namespaces": [
            {"name": "n", "status": "", "labels": None, "annotations": None}]}))
        assert (namespace["status"], namespace["labels"], namespace["annotations"]) == (
            "Unknown", {}, {})

    def test_created_at_spelled_the_python_way_is_accepted(self, h: Harness) -> None:
        [namespace] = h.list_namespaces(ok({"namespaces": [
            {"name": "n", "created_at": "2024-02-02T00:00:00Z"}]}))
        assert namespace["created_at"] == "2024-02-02T00:00:00Z"

    def test_every_namespace_is_returned_whatever_total_count_says(self, h: Harness) -> None:
        names = [{"name": f"ns-{n}"} for n in range(3)]
        assert len(h.list_namespaces(ok({"namespaces": names, "total_count": 99}))) == 3

    def test_empty_error_string_is_success(self, h: Harness) -> None:
        assert h.list_namespaces(dict(ok({"namespaces": []}), error="")) == []


def failed(error: Any = "Agent returned an error: boom", **fields: Any) -> dict[str, Any]:
    return {"agent_id": "agent-1", "result": None, "error": error, **fields}


class TestNamespacesErrors:
    @pytest.mark.parametrize("reply,expected", [
        (failed(error_code="agent_not_connected"), AgentNotConnected),
        (failed(error_code="forbidden"), Forbidden),
        (failed(error_code="agent_timeout"), AgentTimeout),
        (failed(error_code="something_else"), RemoteError),
        (failed(), RemoteError),
        (failed(error=True), RemoteError),
        (ok({"error": True, "message": "cannot list namespaces"}), RemoteError),
        (ok({"error": True, "message": "no", "error_code": "forbidden"}), Forbidden),
        (dict(ok({"error": True, "message": "gone"}), error_code="agent_not_connected"),
         AgentNotConnected),
        (ok(json.dumps({"error": True, "message": "x", "error_code": "agent_timeout"})),
         AgentTimeout),
        (failed(error_code=["not", "hashable"]), RemoteError),
        (failed(error_code={"an": "object"}), RemoteError),
    ], ids=["not-connected", "forbidden", "agent-timeout", "unknown-code", "no-code",
            "error-true", "result-error", "result-error-code", "top-level-code",
            "string-result-error", "code-list", "code-object"])
    def test_error_reply_maps_to_its_error(self, h: Harness, reply: dict[str, Any],
                                           expected: type[Exception]) -> None:
        with pytest.raises(RemoteError) as raised:
            h.list_namespaces(reply)
        assert type(raised.value) is expected

    def test_not_connected_names_the_agent(self, h: Harness) -> None:
        with pytest.raises(AgentNotConnected) as raised:
            h.list_namespaces(failed(error_code="agent_not_connected"), agent_id="agent-9")
        assert "agent-9" in raised.value.message

    def test_peer_error_text_never_reaches_the_message(self, h: Harness) -> None:
        with pytest.raises(RemoteError) as raised:
            h.list_namespaces(failed(error="secret internal detail"))
        assert "secret" not in raised.value.message
        assert raised.value.message.startswith("Failed to communicate with agent")

    @pytest.mark.parametrize("reply", [
        {"agent_id": "a", "error": None},
        ok(None),
        ok("namespaces: this is not json"),
        ok(json.dumps(["a", "list"])),
        ok([{"name": "x"}]),
        ok({"total_count": 0}),
        ok({"namespaces": "default"}),
        ok({"namespaces": [""]}),
        ok({"namespaces": [{"status": "Active"}]}),
        ok({"namespaces": [{"name": ""}]}),
        ok({"namespaces": [{"name": 5}]}),
        ok({"namespaces": [{"name": "n", "labels": ["a"]}]}),
        ok({"namespaces": [{"name": "n", "annotations": "x"}]}),
        b"{not json",
        b"[1, 2, 3]",
    ], ids=["no-result", "null-result", "string-not-json", "string-list", "list-result",
            "no-namespaces", "namespaces-string", "entry-empty-string", "entry-no-name",
            "entry-empty-name", "entry-name-number", "labels-list", "annotations-string",
            "body-not-json", "body-list"])
    def test_malformed_reply_is_a_remote_error(self, h: Harness, reply: Any) -> None:
        with pytest.raises(RemoteError) as raised:
            h.list_namespaces(reply)
        assert type(raised.value) is RemoteError


class TestNamespacesConcurrency:
    def test_identical_concurrent_requests_share_one_rpc(self) -> None:
        h = Harness()
        held: list[dict[str, Any]] = []

        def hold(body: dict[str, Any]) -> None:
            held.append(body)
            return None

        h.transport.responders[NS_QUEUE] = hold

        def followers() -> int:
            [flight] = h.ops._flights._flights.values()
            return len(flight.done._cond._waiters)  # type: ignore[attr-defined]

        with ThreadPoolExecutor(max_workers=10) as pool:
            futures = [pool.submit(h.ops.list_namespaces, USER, "agent-1", 5)
                       for _ in range(10)]
            wait_for(lambda: held and followers() == 9, 5, what="9 followers")
            request_id = held[0]["request_id"]
            h.transport.deliver("reply.fake", json.dumps(
                {"request_id": request_id, **ok({"namespaces": [NS]})}).encode(), request_id)
            results = [future.result(5) for future in futures]
        assert len(held) == 1
        assert all(r[0]["name"] == "default" for r in results)

    def test_followers_wait_as_long_as_the_leader_may(self) -> None:
        """The leader may first wait for the broker's first connection; a follower
        must not give up with a timeout while the leader still gets its answer."""
        settings = load_settings({"WEBSOCKET_TIMEOUT": "0.2", "BROKER_CONNECT_WAIT": "3"})
        transport = NotYetConnected()
        ops = ClusterOperations(settings, RpcClient(transport, connect_wait=3))
        transport.responders[NS_QUEUE] = lambda body: [
            ({"request_id": body["request_id"], **ok({"namespaces": [NS]})}, 0)]
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(ops.list_namespaces, USER, "agent-1", 1) for _ in range(2)]
            wait_for(lambda: ops._flights._flights, 2, what="the flight")
            # Connect only after the old follower bound (WEBSOCKET_TIMEOUT + 1 s) has passed.
            timer = threading.Timer(1.4, transport.set_connected, (True,))
            timer.start()
            assert [f.result(10)[0]["name"] for f in futures] == ["default", "default"]
            timer.join()

    def test_a_stuck_agent_does_not_block_other_agents(self) -> None:
        h = Harness(MAX_INFLIGHT_PER_AGENT="1", WEBSOCKET_TIMEOUT="1")

        def by_agent(body: dict[str, Any]) -> list[tuple[Any, float]] | None:
            if body["agent_id"] == "stuck":
                return None
            return [({"request_id": body["request_id"], **ok({"namespaces": [NS]})}, 0)]

        h.transport.responders[NS_QUEUE] = by_agent
        with ThreadPoolExecutor(max_workers=2) as pool:
            stuck = pool.submit(h.ops.list_namespaces, USER, "stuck", 1)
            wait_for(lambda: h.rpc.pending_count == 1, 2, what="the stuck call")
            in_line = pool.submit(h.ops.list_namespaces, USER, "stuck", 2)
            assert h.ops.list_namespaces(USER, "healthy", 1)[0]["name"] == "default"
            with pytest.raises(RpcTimeout):
                stuck.result(5)
            # It waited in line for the whole of its own budget, not 100 ms.
            with pytest.raises((Saturated, RpcTimeout)):
                in_line.result(5)
        assert h.transport.count(NS_QUEUE) <= 3


class TestBreaker:
    """A hung agent's calls fail fast once its breaker opens; a slow one is served."""

    @staticmethod
    def harness(latency: dict[str, float | None]) -> Harness:
        h = Harness(WEBSOCKET_TIMEOUT="0.3", BREAKER_FAILURES="2", BREAKER_COOLDOWN="60")

        def by_agent(body: dict[str, Any]) -> list[tuple[Any, float]] | None:
            delay = latency[body["agent_id"]]
            if delay is None:
                return None
            return [({"request_id": body["request_id"], **ok({"namespaces": [NS]})}, delay)]

        h.transport.responders[NS_QUEUE] = by_agent
        return h

    def test_timeouts_in_a_row_open_it_and_the_next_call_fails_fast(self) -> None:
        h = self.harness({"hung": None, "healthy": 0.0})
        for cluster in (1, 2):
            with pytest.raises(RpcTimeout):
                h.ops.list_namespaces(USER, "hung", cluster)
        published = h.transport.count(NS_QUEUE)
        started = time.monotonic()
        with pytest.raises(AgentUnresponsive) as refused:
            h.ops.list_namespaces(USER, "hung", 3)
        assert time.monotonic() - started < 0.1
        assert refused.value.retry_after > 0
        assert h.transport.count(NS_QUEUE) == published  # the agent was not asked again
        assert h.ops.list_namespaces(USER, "healthy", 1)[0]["name"] == "default"

    def test_slow_answers_within_the_timeout_never_open_it(self) -> None:
        h = self.harness({"slow": 0.2})
        for cluster in range(5):
            assert h.ops.list_namespaces(USER, "slow", cluster)[0]["name"] == "default"
        assert h.ops.breakers.open_count == 0

    def test_errors_from_a_live_agent_do_not_open_it(self) -> None:
        h = Harness(BREAKER_FAILURES="1")
        for _ in range(3):
            with pytest.raises(AgentNotConnected):
                h.list_namespaces({"agent_id": "agent-1", "result": None,
                                   "error": "gone", "error_code": "agent_not_connected"})
        assert h.ops.breakers.open_count == 0

    def test_the_peer_saying_agent_timeout_counts_as_a_timeout(self) -> None:
        h = Harness(BREAKER_FAILURES="2")
        for _ in range(2):
            with pytest.raises(AgentTimeout):
                h.list_namespaces({"agent_id": "agent-1", "result": None, "error": "late",
                                   "error_code": "agent_timeout"})
        with pytest.raises(AgentUnresponsive):
            h.list_namespaces(ok({"namespaces": [NS]}))

    def test_calls_waiting_in_line_give_up_when_it_opens(self) -> None:
        h = Harness(WEBSOCKET_TIMEOUT="1", BREAKER_FAILURES="1", MAX_INFLIGHT_PER_AGENT="1")
        h.transport.responders[NS_QUEUE] = lambda body: None
        with ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(h.ops.list_namespaces, USER, "hung", 1)
            wait_for(lambda: h.rpc.pending_count == 1, 2, what="the first call in flight")
            second = pool.submit(h.ops.list_namespaces, USER, "hung", 2)
            with pytest.raises(RpcTimeout):
                first.result(5)
            ended = time.monotonic()
            with pytest.raises(AgentUnresponsive):
                second.result(5)
            assert time.monotonic() - ended < 0.5  # woken, not left to its own deadline
        assert h.transport.count(NS_QUEUE) == 1

    def test_a_broker_reconnect_forgets_the_breakers(self) -> None:
        # Timeouts over a silently dead connection prove nothing about the agents.
        h = self.harness({"agent-1": None})
        for cluster in (1, 2):
            with pytest.raises(RpcTimeout):
                h.ops.list_namespaces(USER, "agent-1", cluster)
        assert h.ops.breakers.open_count == 1
        h.transport.set_connected(False)
        assert h.ops.breakers.open_count == 1
        h.transport.set_connected(True)
        assert h.ops.breakers.open_count == 0

    def test_after_the_cool_down_one_answer_closes_it(self) -> None:
        latency: dict[str, float | None] = {"flaky": None}
        h = self.harness(latency)
        h.ops.breakers.cooldown = 0.2
        for cluster in (1, 2):
            with pytest.raises(RpcTimeout):
                h.ops.list_namespaces(USER, "flaky", cluster)
        with pytest.raises(AgentUnresponsive):
            h.ops.list_namespaces(USER, "flaky", 3)
        latency["flaky"] = 0.0
        wait_for(lambda: _served(h, "flaky"), 3, what="the trial call after the cool-down")
        assert h.ops.breakers.open_count == 0
        assert h.ops.list_namespaces(USER, "flaky", 4)[0]["name"] == "default"


def _served(h: Harness, agent_id: str) -> bool:
    try:
        return bool(h.ops.list_namespaces(USER, agent_id, 9))
    except AgentUnresponsive:
        return False


class TestConnectedAgents:
    def test_request_body_is_as_the_contract_says(self, h: Harness) -> None:
        h.connected_agents({"agents": [], "error": None})
        request = h.transport.published[0]
        body = json.loads(request.body)
        assert request.queue == h.settings.agents_request_queue
        assert {k: v for k, v in body.items() if k not in ("request_id", "timestamp")} == {
            "command": "list-agents", "user": {"id": 7, "username": "ana"}}

    @pytest.mark.parametrize("agents", [
        ["b", "a", "b", "c"],
        [{"agent_id": "c", "status": "connected"}, {"agent_id": "a"}, {"agent_id": "b"},
         {"agent_id": "a"}],
        ["c", {"agent_id": "a"}, "b"],
    ], ids=["strings", "objects", "mixed"])
    def test_agent_ids_sorted_without_duplicates(self, h: Harness, agents: list[Any]) -> None:
        assert h.connected_agents({"agents": agents, "error": None}) == ["a", "b", "c"]

    def test_no_agents_is_an_empty_list(self, h: Harness) -> None:
        assert h.connected_agents({"agents": [], "error": None}) == []

    def test_each_successful_reply_reports_the_distinct_agent_count(self, h: Harness) -> None:
        h.connected_agents({"agents": ["b", "a", "b"], "error": None})
        h.connected_agents({"agents": [], "error": None})
        with pytest.raises(RemoteError):
            h.connected_agents({"agents": None, "error": "registry unavailable"})
        assert h.observer.agents == [2, 0]  # a failed reply reports nothing

    @pytest.mark.parametrize("reply", [
        {"agents": None, "error": "Onboarding Service error: registry unavailable"},
        {"error": None},
        {"agents": "a,b", "error": None},
        {"agents": [1, 2], "error": None},
        {"agents": [""], "error": None},
        {"agents": [{"id": "a"}], "error": None},
        b"[not json",
    ], ids=["error", "missing", "string", "numbers", "empty-id", "object-without-id",
            "not-json"])
    def test_bad_reply_is_a_remote_error(self, h: Harness, reply: Any) -> None:
        with pytest.raises(RemoteError):
            h.connected_agents(reply)


LEGACY_NOT_CONNECTED_TEXTS = [
    "Failed to communicate with agent: No WebSocket connection found for agent agent-1",
    "Failed to communicate with agent: received 1000 (OK); then sent 1000 (OK)",
]
NEAR_MISSES = [
    "Failed to communicate with agent: No WebSocket connection found for agent other-agent",
    "Failed to communicate with agent: No WebSocket connection found for agent agent-1 (retry)",
    "Failed to communicate with agent: received 1011 (internal error); then sent 1011",
    "Failed to communicate with agent: received 1000 (OK); then sent 1000 (OK) again",
    "failed to communicate with agent: no websocket connection found for agent agent-1",
    "Error: No WebSocket connection found for agent agent-1",
]


class TestLegacyOnboardingErrors:
    """The real Onboarding Service sends no error_code; its two "not there" texts are 404."""

    @pytest.mark.parametrize("text", LEGACY_NOT_CONNECTED_TEXTS, ids=["no-websocket", "closed"])
    def test_the_two_texts_mean_agent_not_connected(self, h: Harness, text: str) -> None:
        with pytest.raises(AgentNotConnected):
            h.list_namespaces({"agent_id": "agent-1", "result": None, "error": text})

    @pytest.mark.parametrize("text", LEGACY_NOT_CONNECTED_TEXTS, ids=["no-websocket", "closed"])
    def test_inside_a_result_object_too(self, h: Harness, text: str) -> None:
        with pytest.raises(AgentNotConnected):
            h.list_namespaces({"agent_id": "agent-1", "error": None,
                               "result": {"error": True, "message": text}})

    @pytest.mark.parametrize("text", NEAR_MISSES)
    def test_anything_else_stays_a_502(self, h: Harness, text: str) -> None:
        with pytest.raises(RemoteError) as caught:
            h.list_namespaces({"agent_id": "agent-1", "result": None, "error": text})
        assert not isinstance(caught.value, AgentNotConnected)

    def test_an_explicit_error_code_wins_over_the_text(self, h: Harness) -> None:
        with pytest.raises(Forbidden):
            h.list_namespaces({"agent_id": "agent-1", "error": LEGACY_NOT_CONNECTED_TEXTS[0],
                               "error_code": "forbidden"})
