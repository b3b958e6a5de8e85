"""The real service under gunicorn against the real RabbitMQ and the stand-in peers.

Each test (or module fixture) has its own queue prefix, so it shares no queue
with other tests on the broker. Every wait polls with a deadline.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pika
import pika.exceptions
import pytest
import requests

from cluster_service.rpc.call_ids import owner_token, reply_queue_name

from ..support.peers import delete_queues, start_peers, wrong_namespaces
from ..support.prometheus import metric
from ..support.rabbitmq_admin import close_connection, service_connections
from ..support.request_tap import RequestTap
from ..support.service import ServiceProcess, free_port, queue_env, wait_for

pytestmark = [pytest.mark.rabbitmq, pytest.mark.gunicorn]

KEY = "demo-key"
ERROR_KEYS = ["success", "error", "message", "request_id", "timestamp"]
WEBSOCKET_TIMEOUT = 1.5
AUTH_TIMEOUT = 1.0


def namespaces(service: ServiceProcess, agent_id: str, key: str | None = KEY,
               session: requests.Session | None = None, **params: Any) -> requests.Response:
    headers = {"X-API-Key": key} if key is not None else {}
    return (session or service.session).get(
        f"{service.base_url}/namespaces", params={"agent_id": agent_id, **params},
        headers=headers, timeout=30)


def assert_error(response: requests.Response, status: int, error: str) -> None:
    body = response.json()
    assert response.status_code == status, body
    assert list(body) == ERROR_KEYS
    assert body["error"] == error
    assert body["request_id"] == response.headers["X-Request-ID"]
    if status == 503:
        assert int(response.headers["Retry-After"]) > 0


class Background:
    """One HTTP call in a thread; keeps the response and when it arrived."""

    def __init__(self, work: Callable[[], requests.Response]) -> None:
        self.response: requests.Response | None = None
        self.error: BaseException | None = None
        self.started_at = time.monotonic()
        self.ended_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], requests.Response]) -> None:
        try:
            self.response = work()
        except BaseException as error:  # reported by result()
            self.error = error
        self.ended_at = time.monotonic()

    def result(self, timeout: float = 30) -> requests.Response:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the HTTP call did not finish"
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


# -- one service shared by the error table and the late-reply checks ---------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    """Two workers with small timeouts, and the stand-in peers, on a private prefix."""
    prefix = f"t-{uuid.uuid4().hex[:10]}-"
    peers = start_peers(prefix)
    service = ServiceProcess(tmp_path_factory.mktemp("messaging"), {
        **queue_env(prefix), "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4",
        "WEBSOCKET_TIMEOUT": str(WEBSOCKET_TIMEOUT), "AUTH_TIMEOUT": str(AUTH_TIMEOUT)})
    try:
        service.start()
        yield SimpleNamespace(service=service, peers=peers, prefix=prefix)
    finally:
        service.stop()
        peers.stop()
        delete_queues(prefix)


ERROR_TABLE = [
    # (agent_id, API key, status, error)
    ("demo-agent-1", None, 401, "authentication_failed"),
    ("demo-agent-1", "wrong-key", 401, "authentication_failed"),
    ("demo-agent-1", "inactive-key", 401, "authentication_failed"),
    ("demo-agent-1", "backend-error-key", 503, "service_unavailable"),
    ("demo-agent-1", "silent-auth-key", 503, "service_unavailable"),
    ("fault-forbidden-1", KEY, 403, "forbidden"),
    ("fault-not-connected-1", KEY, 404, "agent_not_connected"),
    ("nobody-knows-this-agent", KEY, 404, "agent_not_connected"),
    ("fault-error-1", KEY, 502, "agent_error"),
    ("fault-malformed-1", KEY, 502, "agent_error"),
    ("fault-result-error-1", KEY, 502, "agent_error"),
    ("fault-wrong-shape-1", KEY, 502, "agent_error"),
    ("fault-wrong-shape-list-1", KEY, 502, "agent_error"),
    ("fault-result-not-json-1", KEY, 502, "agent_error"),
    ("fault-timeout-code-1", KEY, 504, "agent_timeout"),
    ("fault-silent-1", KEY, 504, "agent_timeout"),
]


class TestErrorTable:
    @pytest.mark.parametrize("agent_id,key,status,error", ERROR_TABLE,
                             ids=[f"{row[2]}-{row[1] if row[2] in (401, 503) else row[0]}"
                                  for row in ERROR_TABLE])
    def test_row(self, shared: SimpleNamespace, agent_id: str, key: str | None, status: int,
                 error: str) -> None:
        started = time.monotonic()
        response = namespaces(shared.service, agent_id, key)
        elapsed = time.monotonic() - started
        assert_error(response, status, error)
        body = response.json()
        if status == 502:
            assert body["message"].startswith("Failed to communicate with agent")
        if agent_id == "fault-silent-1":
            assert WEBSOCKET_TIMEOUT - 0.1 <= elapsed < WEBSOCKET_TIMEOUT + 2
        if key == "silent-auth-key":
            assert AUTH_TIMEOUT - 0.1 <= elapsed < AUTH_TIMEOUT + 2
        if key and key != KEY:
            assert key not in response.text

    def test_success_carries_the_agents_own_namespaces(self, shared: SimpleNamespace) -> None:
        response = namespaces(shared.service, "string-result-7", cluster_id=42)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["cluster_id"] == 42 and body["agent_id"] == "string-result-7"
        names = [ns["name"] for ns in body["namespaces"]]
        assert "team-string-result-7" in names and body["total_count"] == len(names)

    def test_connected_agents(self, shared: SimpleNamespace) -> None:
        response = shared.service.get("/agents/connected", headers={"X-API-Key": KEY})
        assert response.status_code == 200, response.text
        agents = response.json()["connected_agents"]
        assert agents == sorted({f"demo-agent-{n}" for n in range(1, 21)})
        assert response.json()["total_count"] == 20

    @pytest.mark.parametrize("fault,status,error", [
        ("error", 502, "agent_error"), ("malformed", 502, "agent_error"),
        ("silent", 504, "agent_timeout"), ("duplicate", 200, None),
    ])
    def test_connected_agents_faults(self, shared: SimpleNamespace, fault: str, status: int,
                                     error: str | None) -> None:
        shared.peers.config.agents_fault = fault  # read by the peers on every request
        try:
            response = shared.service.get("/agents/connected", headers={"X-API-Key": KEY})
        finally:
            shared.peers.config.agents_fault = "none"
        if error is None:
            assert response.status_code == status
        else:
            assert_error(response, status, error)


class TestLateAndDuplicateReplies:
    def test_late_reply_is_dropped_and_the_next_request_works(self,
                                                              shared: SimpleNamespace) -> None:
        service = shared.service
        namespaces(service, "demo-agent-3")  # warm the key cache of whichever worker
        before = metric(service, "cluster_rpc_replies_dropped_total")
        started = time.monotonic()
        response = namespaces(service, "fault-late-2500-x")
        elapsed = time.monotonic() - started
        assert_error(response, 504, "agent_timeout")
        assert WEBSOCKET_TIMEOUT - 0.1 <= elapsed < WEBSOCKET_TIMEOUT + 1.5
        wait_for(lambda: metric(service, "cluster_rpc_replies_dropped_total") > before, 8,
                 interval=0.2, what="the late reply to be dropped")
        response = namespaces(service, "demo-agent-4")
        assert response.status_code == 200
        assert "team-demo-agent-4" in [ns["name"] for ns in response.json()["namespaces"]]

    def test_a_poison_reply_on_a_fixed_queue_does_not_cost_the_connection(
            self, shared: SimpleNamespace) -> None:
        """A reply json.loads cannot even fail on cleanly (RecursionError) is dropped and acked,
        not raised into the I/O thread, where it would drop the connection and, redelivered,
        do the same to every worker in turn."""
        service = shared.service
        before = metric(service, "cluster_rpc_replies_dropped_total")
        connection = broker()
        try:
            connection.channel().basic_publish(
                "", service.env["AUTH_RESULT_QUEUE"], b"[" * 100_000,
                pika.BasicProperties(delivery_mode=1))
        finally:
            connection.close()
        wait_for(lambda: metric(service, "cluster_rpc_replies_dropped_total") > before, 10,
                 interval=0.2, what="the poison reply to be dropped")
        assert "broker connection lost" not in service.logs()
        assert namespaces(service, "demo-agent-3").status_code == 200

    def test_duplicate_reply_is_harmless_and_counted(self, shared: SimpleNamespace) -> None:
        service = shared.service
        before = metric(service, "cluster_rpc_replies_dropped_total")
        response = namespaces(service, "fault-duplicate-1")
        assert response.status_code == 200
        wait_for(lambda: metric(service, "cluster_rpc_replies_dropped_total") > before, 5,
                 interval=0.2, what="the duplicate reply to be dropped")


# -- concurrency over several workers, both reply styles -----------------------------------


def test_concurrent_requests_each_get_their_own_agents_namespaces(
        service_factory: Callable[..., ServiceProcess], peers: Any) -> None:
    # Default saturation settings: a burst of fast requests must never be called saturated.
    service = service_factory(WEB_CONCURRENCY="4", GUNICORN_THREADS="8", WEBSOCKET_TIMEOUT="15")
    local = threading.local()
    sessions: list[requests.Session] = []

    def one(n: int) -> str | None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            sessions.append(session)
        agent_id = f"demo-agent-{n % 20 + 1}"
        response = namespaces(service, agent_id, session=session, cluster_id=n)
        return wrong_namespaces(response, agent_id, n)

    for style in ("reply_to", "results"):
        peers.set_reply_style(style)
        rerouted_before = metric(service, "cluster_rpc_replies_rerouted_total")
        with ThreadPoolExecutor(max_workers=32) as pool:
            errors = [e for e in pool.map(one, range(200)) if e is not None]
        worker = metric(service, "cluster_saturated_total", scope="worker")
        agent = metric(service, "cluster_saturated_total", scope="agent")
        assert errors == [], (f"{style}: {len(errors)} errors ({worker:g} refused by the worker "
                              f"bound, {agent:g} by the agent bound), first: {errors[:3]}")
        rerouted = metric(service, "cluster_rpc_replies_rerouted_total") - rerouted_before
        if style == "results":
            # Four workers share the fixed queues: most replies land on a stranger first.
            assert rerouted > 0
        else:
            assert rerouted == 0
    wait_for(lambda: metric(service, "cluster_rpc_inflight") == 0, 5, what="no RPC in flight")
    for session in sessions:
        session.close()


def test_replies_on_fixed_queues_reach_the_right_replica(
        service_factory: Callable[..., ServiceProcess], peers: Any) -> None:
    """Two replicas share the fixed results queues: a reply consumed by the wrong
    replica is forwarded to the reply queue of the worker that waits for it, and only there."""
    replicas = [service_factory(WEB_CONCURRENCY="2", GUNICORN_THREADS="4") for _ in range(2)]
    peers.set_reply_style("results")

    def one(n: int) -> str | None:
        agent_id = f"demo-agent-{n % 20 + 1}"
        with requests.Session() as session:
            response = namespaces(replicas[n % 2], agent_id, session=session, cluster_id=n)
        teams = [ns["name"] for ns in response.json().get("namespaces", [])
                 if ns["name"].startswith("team-")]
        ok = response.status_code == 200 and teams == [f"team-{agent_id}"]
        return None if ok else f"{agent_id}: {response.status_code} {response.text[:200]}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        errors = [e for e in pool.map(one, range(60)) if e is not None]
    assert errors == []
    assert sum(metric(r, "cluster_rpc_replies_rerouted_total", route="direct")
               for r in replicas) > 0
    assert sum(metric(r, "cluster_rpc_replies_rerouted_total", route="broadcast")
               for r in replicas) == 0
    assert sum(metric(r, "cluster_rpc_replies_dropped_total", reason="not_owner")
               for r in replicas) == 0


# -- broker connection lost under a waiting request ---------------------------------------


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl")
def test_connection_closed_under_a_waiting_request(
        service_factory: Callable[..., ServiceProcess], peers: Any) -> None:
    service = service_factory(WEB_CONCURRENCY="1", GUNICORN_THREADS="4",
                              WEBSOCKET_TIMEOUT="20")
    assert namespaces(service, "demo-agent-1").status_code == 200  # key cached from here on
    [pid] = service.worker_pids()
    connection = wait_for(lambda: service_connections().get(pid), 10,
                          what="the worker's broker connection")
    asked = peers.counters["requests_namespaces"]
    waiting = Background(lambda: namespaces(service, "fault-silent-close"))
    wait_for(lambda: peers.counters["requests_namespaces"] > asked, 10,
             what="the request to reach the peer")
    closed_at = time.monotonic()
    close_connection(connection, "test: connection lost under a waiting request")
    response = waiting.result()
    assert_error(response, 503, "service_unavailable")
    # Promptly: the close command itself takes a second or two; the 20 s timeout is far.
    assert waiting.ended_at - closed_at < 6
    wait_for(lambda: service.get("/ready", timeout=5).status_code == 200, 15,
             what="the worker to reconnect")
    response = namespaces(service, "demo-agent-2")
    assert response.status_code == 200, response.text
    assert service.worker_pids() == {pid}  # served again without a restart
    assert service_connections().get(pid) not in (None, connection)


# -- broker down from the start -----------------------------------------------------------


def test_broker_unreachable_is_503_at_once_and_not_ready(
        service_factory: Callable[..., ServiceProcess]) -> None:
    service = service_factory(ready=False, WEB_CONCURRENCY="1", RABBITMQ_PORT=str(free_port()),
                              BROKER_CONNECT_WAIT="3")
    wait_for(lambda: service.get("/ready", timeout=5).status_code == 503, 10,
             what="/ready to report the broker")
    ready = service.get("/ready").json()
    assert ready["status"] == "not_ready" and ready["checks"]["rabbitmq"] != "ok"
    assert service.get("/health").status_code == 200
    started = time.monotonic()
    assert_error(namespaces(service, "demo-agent-1"), 503, "service_unavailable")
    assert time.monotonic() - started < 2.5


# -- the request message as it travels ----------------------------------------------------


def broker() -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", credentials=pika.PlainCredentials("guest", "guest"),
        connection_attempts=1, socket_timeout=5))


def test_request_messages_carry_the_contract_properties(
        service_factory: Callable[..., ServiceProcess], prefix: str) -> None:
    """Play the peers by hand: check each request, answer auth on reply_to and the
    namespaces request on the fixed results queue (matched by request_id alone)."""
    queues = queue_env(prefix)
    connection = broker()
    try:
        tap = RequestTap(connection, [queues["AUTH_REQUEST_QUEUE"],
                                      queues["NAMESPACE_REQUEST_QUEUE"]])
        channel = tap.channel
        service = service_factory(WEB_CONCURRENCY="1", AUTH_TIMEOUT="4.5",
                                  WEBSOCKET_TIMEOUT="4")
        [pid] = service.worker_pids()
        waiting = Background(lambda: service.get(
            "/namespaces", params={"agent_id": "agent-props", "cluster_id": "77"},
            headers={"X-API-Key": "props-key", "X-Request-ID": "props-trace-1"}))

        properties, body = tap.next(queues["AUTH_REQUEST_QUEUE"])
        assert properties.content_type == "application/json"
        assert properties.correlation_id == body["request_id"]
        # A version-8 id that names the worker's reply queue (call_ids.py).
        assert uuid.UUID(body["request_id"]).version == 8
        token = owner_token(body["request_id"])
        assert token is not None and properties.reply_to == reply_queue_name(token)
        assert properties.expiration == str(int(4.5 * 1000))
        assert properties.delivery_mode == 1
        assert properties.app_id == "cluster_service"
        assert properties.headers == {"x-request-id": "props-trace-1"}
        assert body["api_key"] == "props-key" and body["service"] == "cluster_service"
        assert isinstance(body["timestamp"], float)

        # The reply queue belongs to the worker's connection alone.
        probe = connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as locked:
            probe.queue_declare(properties.reply_to, passive=True, exclusive=True)
        assert locked.value.reply_code == 405  # RESOURCE_LOCKED

        channel.basic_publish("", properties.reply_to, json.dumps({
            "request_id": body["request_id"], "valid": True, "message": "ok",
            "user_data": {"id": 5, "username": "props", "email": None, "roles": None,
                          "is_active": True}}),
            pika.BasicProperties(correlation_id=properties.correlation_id,
                                 content_type="application/json"))

        properties, body = tap.next(queues["NAMESPACE_REQUEST_QUEUE"])
        assert properties.headers == {"x-request-id": "props-trace-1"}
        assert properties.expiration == "4000"
        assert properties.correlation_id == body["request_id"]
        assert {k: v for k, v in body.items() if k not in ("request_id", "timestamp")} == {
            "command": "get-namespaces", "agent_id": "agent-props", "cluster_id": 77,
            "cluster_config": {"cluster_id": 77, "include_details": True},
            "user": {"id": 5, "username": "props"}}
        channel.basic_publish("", queues["NAMESPACE_RESULT_QUEUE"], json.dumps({
            "request_id": body["request_id"], "agent_id": "agent-props", "error": None,
            "result": json.dumps({"namespaces": [{"name": "from-the-test"}]})}))

        response = waiting.result()
        assert response.status_code == 200, response.text
        assert response.headers["X-Request-ID"] == "props-trace-1"
        assert response.json()["namespaces"] == [{
            "name": "from-the-test", "status": "Unknown", "created_at": None, "labels": {},
            "annotations": {}}]
    finally:
        connection.close()
