"""The development stand-in peers answer over a real RabbitMQ as the contract says.

Each test gets its own queue-name prefix, so it never shares queues with another
test on the same broker, and deletes its queues afterwards. Every wait is bounded
by a deadline.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pika
import pytest

from devpeers import Behaviour, DevPeers, PeerConfig, Reply, parse_agent_id
from devpeers.config import fingerprint, parse_api_keys

from ..support.service import wait_for

pytestmark = pytest.mark.rabbitmq

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAIT = 5.0   # seconds; generous upper bound for a reply on a local broker

Message = Tuple[Any, bytes]   # (pika BasicProperties, body)


def broker_parameters() -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host=os.environ.get("RABBITMQ_HOST", "127.0.0.1"),
        port=int(os.environ.get("RABBITMQ_PORT", "5672")),
        virtual_host=os.environ.get("RABBITMQ_VHOST", "/"),
        credentials=pika.PlainCredentials(os.environ.get("RABBITMQ_USER", "guest"),
                                          os.environ.get("RABBITMQ_PASSWORD", "guest")),
        connection_attempts=1, socket_timeout=5,
    )


class PeerClient:
    """A plain pika client playing the Cluster Service: publish, then collect replies."""

    def __init__(self, parameters: pika.ConnectionParameters) -> None:
        self.connection = pika.BlockingConnection(parameters)
        self.channel = self.connection.channel()
        declared = self.channel.queue_declare(queue="", exclusive=True)
        self.reply_queue: str = declared.method.queue
        self.received: Dict[str, List[Message]] = {}
        self.listen(self.reply_queue)

    def listen(self, queue: str) -> None:
        self.received.setdefault(queue, [])
        self.channel.basic_consume(queue=queue, auto_ack=True,
                                   on_message_callback=functools.partial(self._on_message, queue))

    def _on_message(self, queue: str, _channel: Any, _method: Any, properties: Any,
                    body: bytes) -> None:
        self.received[queue].append((properties, body))

    def request(self, queue: str, body: Dict[str, Any]) -> str:
        request_id = str(uuid.uuid4())
        payload = {"request_id": request_id, "timestamp": time.time(), **body}
        properties = pika.BasicProperties(
            content_type="application/json", correlation_id=request_id,
            reply_to=self.reply_queue, expiration="10000", delivery_mode=1,
            app_id="cluster_service", headers={"x-request-id": request_id})
        self.channel.basic_publish(exchange="", routing_key=queue,
                                   body=json.dumps(payload), properties=properties)
        return request_id

    def wait(self, count: int = 1, queue: Optional[str] = None,
             timeout: float = WAIT) -> List[Message]:
        """Wait until `count` messages arrived on `queue` (the reply queue by default)."""
        messages = self.received[queue or self.reply_queue]
        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.05)
        return list(messages)

    def drain(self, seconds: float) -> None:
        """Keep receiving for `seconds` (to check that nothing more arrives)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.05)

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def body_of(message: Message) -> Dict[str, Any]:
    decoded = json.loads(message[1])
    assert isinstance(decoded, dict)
    return decoded


@pytest.fixture(scope="module")
def parameters() -> pika.ConnectionParameters:
    params = broker_parameters()
    try:
        pika.BlockingConnection(params).close()
    except pika.exceptions.AMQPError as exc:
        # The real broker is part of the test environment (.ci/run starts it):
        # its absence is a failure, not a reason to skip.
        pytest.fail(f"RabbitMQ is not reachable on 127.0.0.1:5672: {type(exc).__name__}")
    return params


@pytest.fixture
def config(parameters: pika.ConnectionParameters) -> Iterator[PeerConfig]:
    """A config with a unique queue prefix; its queues are deleted at teardown."""
    credentials = parameters.credentials
    peer_config = PeerConfig(
        host=parameters.host, port=parameters.port, vhost=parameters.virtual_host,
        user=credentials.username, password=credentials.password,
    ).with_queue_prefix(f"test-{uuid.uuid4().hex[:12]}-")
    yield peer_config
    connection = pika.BlockingConnection(parameters)
    channel = connection.channel()
    for queue in peer_config.queue_names():
        channel.queue_delete(queue=queue)
    connection.close()


@pytest.fixture
def peers(config: PeerConfig) -> Iterator[DevPeers]:
    running = DevPeers(config).start(timeout=10)
    yield running
    running.stop()
    assert not running.is_running


@pytest.fixture
def client(parameters: pika.ConnectionParameters) -> Iterator[PeerClient]:
    peer_client = PeerClient(parameters)
    yield peer_client
    peer_client.close()


def auth(client: PeerClient, config: PeerConfig, key: str) -> str:
    return client.request(config.auth_request_queue,
                          {"api_key": key, "service": "cluster_service"})


def get_namespaces(client: PeerClient, config: PeerConfig, agent_id: str,
                   user_id: int = 7) -> str:
    return client.request(config.namespace_request_queue, {
        "command": "get-namespaces", "agent_id": agent_id, "cluster_id": 123,
        "cluster_config": {"cluster_id": 123, "include_details": True},
        "user": {"id": user_id, "username": "ana"},
    })


def list_agents(client: PeerClient, config: PeerConfig) -> str:
    return client.request(config.agents_request_queue,
                          {"command": "list-agents", "user": {"id": 7, "username": "ana"}})


class TestAuth:
    def test_valid_key_returns_user_data(self, peers: DevPeers, client: PeerClient,
                                         config: PeerConfig) -> None:
        request_id = auth(client, config, "demo-key")
        [(properties, body)] = client.wait()
        assert properties.correlation_id == request_id
        assert properties.content_type == "application/json"
        assert properties.delivery_mode == 1
        assert json.loads(body) == {
            "request_id": request_id,
            "valid": True,
            "user_data": {"id": 7, "username": "ana", "email": "ana@example.com",
                          "roles": "admin,dev", "is_active": True},
            "message": "Authentication successful",
        }

    def test_invalid_key_is_rejected(self, peers: DevPeers, client: PeerClient,
                                     config: PeerConfig) -> None:
        request_id = auth(client, config, "no-such-key")
        [reply] = client.wait()
        assert body_of(reply) == {"request_id": request_id, "valid": False,
                                  "error": "Invalid API key"}

    def test_backend_error_key_answers_without_valid(self, peers: DevPeers,
                                                     client: PeerClient,
                                                     config: PeerConfig) -> None:
        request_id = auth(client, config, "backend-error-key")
        [reply] = client.wait()
        assert body_of(reply) == {"request_id": request_id,
                                  "error": "Authentication error: database unavailable"}

    def test_inactive_user_is_valid_but_not_active(self, peers: DevPeers, client: PeerClient,
                                                   config: PeerConfig) -> None:
        auth(client, config, "inactive-key")
        [reply] = client.wait()
        assert body_of(reply)["valid"] is True
        assert body_of(reply)["user_data"]["is_active"] is False

    def test_silent_key_gets_no_reply(self, peers: DevPeers, client: PeerClient,
                                      config: PeerConfig) -> None:
        auth(client, config, "silent-auth-key")
        client.drain(0.5)
        assert client.received[client.reply_queue] == []
        assert peers.counters["no_reply"] == 1


class TestNamespaces:
    def test_each_agent_answers_with_its_own_team_namespace(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        first = get_namespaces(client, config, "demo-agent-1")
        second = get_namespaces(client, config, "demo-agent-2")
        replies = {body_of(m)["request_id"]: body_of(m) for m in client.wait(2)}
        assert set(replies) == {first, second}
        for request_id, agent_id in ((first, "demo-agent-1"), (second, "demo-agent-2")):
            reply = replies[request_id]
            assert reply["agent_id"] == agent_id
            assert reply["error"] is None
            names = [ns["name"] for ns in reply["result"]["namespaces"]]
            assert names == ["default", "kube-system", "kube-public", "kube-node-lease",
                             f"team-{agent_id}"]
            assert reply["result"]["total_count"] == 5
            namespace = reply["result"]["namespaces"][0]
            assert namespace["status"] == "Active"
            assert namespace["createdAt"] == "2024-01-01T12:00:00Z"
            assert namespace["labels"] == {"kubernetes.io/metadata.name": "default"}

    def test_unknown_agent_is_not_connected(self, peers: DevPeers, client: PeerClient,
                                            config: PeerConfig) -> None:
        request_id = get_namespaces(client, config, "no-such-agent")
        [reply] = client.wait()
        body = body_of(reply)
        assert body["request_id"] == request_id
        assert body["error"] == "Agent not connected"
        assert body["error_code"] == "agent_not_connected"

    def test_fault_duplicate_sends_two_replies(self, peers: DevPeers, client: PeerClient,
                                               config: PeerConfig) -> None:
        request_id = get_namespaces(client, config, "fault-duplicate-1")
        replies = client.wait(2)
        client.drain(0.2)
        assert len(client.received[client.reply_queue]) == 2
        assert [body_of(m)["request_id"] for m in replies] == [request_id, request_id]
        assert peers.counters["replies_namespaces"] == 2

    def test_slow_agent_does_not_hold_up_a_fast_one(self, peers: DevPeers, client: PeerClient,
                                                    config: PeerConfig) -> None:
        slow = get_namespaces(client, config, "slow-1500-a")
        fast = get_namespaces(client, config, "demo-agent-3")
        [first] = client.wait(1)
        assert body_of(first)["request_id"] == fast
        replies = client.wait(2)
        assert body_of(replies[1])["request_id"] == slow
        assert body_of(replies[1])["error"] is None

    def test_string_result_agent_sends_result_as_json_string(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        get_namespaces(client, config, "string-result-1")
        [reply] = client.wait()
        result = body_of(reply)["result"]
        assert isinstance(result, str)
        assert json.loads(result)["namespaces"][-1]["name"] == "team-string-result-1"

    def test_owned_agent_is_forbidden_to_another_user(self, config: PeerConfig,
                                                      client: PeerClient) -> None:
        config.owners = {"demo-agent-1": 8}
        with DevPeers(config):
            get_namespaces(client, config, "demo-agent-1", user_id=7)
            get_namespaces(client, config, "demo-agent-1", user_id=8)
            first, second = client.wait(2)
        assert body_of(first)["error_code"] == "forbidden"
        assert body_of(second)["error"] is None


class TestReplyStyles:
    def test_results_style_publishes_on_the_results_queue(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        peers.set_reply_style("results")
        client.listen(config.auth_result_queue)
        client.listen(config.namespace_result_queue)
        auth_id = auth(client, config, "demo-key")
        namespaces_id = get_namespaces(client, config, "demo-agent-1")
        [auth_reply] = client.wait(queue=config.auth_result_queue)
        [namespaces_reply] = client.wait(queue=config.namespace_result_queue)
        assert body_of(auth_reply)["request_id"] == auth_id
        assert body_of(namespaces_reply)["request_id"] == namespaces_id
        assert client.received[client.reply_queue] == []

    def test_alternate_style_switches_per_message(self, peers: DevPeers, client: PeerClient,
                                                  config: PeerConfig) -> None:
        peers.set_reply_style("alternate")
        client.listen(config.auth_result_queue)
        for _ in range(4):
            auth(client, config, "demo-key")
        client.wait(2)
        client.wait(2, queue=config.auth_result_queue)
        assert len(client.received[client.reply_queue]) == 2
        assert len(client.received[config.auth_result_queue]) == 2


class TestConnectedAgents:
    def test_list_agents_returns_the_demo_agents(self, peers: DevPeers, client: PeerClient,
                                                 config: PeerConfig) -> None:
        request_id = list_agents(client, config)
        [reply] = client.wait()
        assert body_of(reply) == {
            "request_id": request_id,
            "agents": [f"demo-agent-{n}" for n in range(1, 21)],
            "error": None,
        }

    def test_objects_format_lists_agent_objects(self, config: PeerConfig,
                                                client: PeerClient) -> None:
        config.agents_format = "objects"
        config.agent_count = 2
        with DevPeers(config):
            list_agents(client, config)
            [reply] = client.wait()
        assert body_of(reply)["agents"] == [
            {"agent_id": "demo-agent-1", "status": "connected"},
            {"agent_id": "demo-agent-2", "status": "connected"},
        ]


class TestCounters:
    def test_counters_and_stats_file_count_requests_and_replies(
            self, config: PeerConfig, client: PeerClient, tmp_path: Any) -> None:
        stats = tmp_path / "stats.json"
        config.stats_file = str(stats)
        peers = DevPeers(config).start(timeout=10)
        try:
            auth(client, config, "demo-key")
            get_namespaces(client, config, "demo-agent-1")
            list_agents(client, config)
            client.wait(3)
        finally:
            peers.stop()
        counters = peers.counters
        assert (counters["requests_auth"], counters["requests_namespaces"],
                counters["requests_agents"]) == (1, 1, 1)
        assert counters["replies_total"] == 3
        written = json.loads(stats.read_text())
        assert written["requests_total"] == 3
        assert written["replies_total"] == 3


class TestKeysStayPrivate:
    def test_bad_key_entry_error_does_not_echo_the_key(self) -> None:
        with pytest.raises(ValueError) as raised:
            parse_api_keys("good=1:ana,super-secret-key=notanumber:bob")
        assert "super-secret-key" not in str(raised.value)
        assert "entry 2" in str(raised.value)

    def test_fingerprint_is_short_sha256(self) -> None:
        assert fingerprint("demo-key") == hashlib.sha256(b"demo-key").hexdigest()[:12]


class TestFaultConventions:
    """The agent-id conventions, checked on the pure behaviour (no broker needed)."""

    REQUEST = {"request_id": "r-1", "command": "get-namespaces", "cluster_id": 5,
               "user": {"id": 7, "username": "ana"}}

    def answer(self, agent_id: str, **overrides: Any) -> List[Reply]:
        return Behaviour(PeerConfig(**overrides)).namespaces(
            {**self.REQUEST, "agent_id": agent_id})

    @pytest.mark.parametrize("agent_id, error, error_code", [
        ("fault-error-1", "Agent returned an error: boom", None),
        ("fault-not-connected-1", "Agent not connected", "agent_not_connected"),
        ("fault-forbidden-1", "User is not allowed to use this agent", "forbidden"),
        ("fault-timeout-code-1", "Agent did not respond in time", "agent_timeout"),
        ("unknown-agent", "Agent not connected", "agent_not_connected"),
    ])
    def test_error_agents(self, agent_id: str, error: str, error_code: Optional[str]) -> None:
        [reply] = self.answer(agent_id)
        body = json.loads(reply.body)
        assert (body["request_id"], body["result"], body["error"]) == ("r-1", None, error)
        assert body.get("error_code") == error_code

    def test_silent_agent_sends_nothing(self) -> None:
        assert self.answer("fault-silent-1") == []

    def test_result_error_agent(self) -> None:
        [reply] = self.answer("fault-result-error-1")
        assert json.loads(reply.body)["result"] == {"error": True,
                                                    "message": "cannot list namespaces"}

    @pytest.mark.parametrize("agent_id", ["fault-malformed-1", "fault-wrong-shape-list-1"])
    def test_unparseable_or_list_bodies(self, agent_id: str) -> None:
        [reply] = self.answer(agent_id)
        try:
            decoded = json.loads(reply.body)
        except ValueError:
            decoded = None
        assert not isinstance(decoded, dict)

    def test_wrong_shape_result_has_no_namespaces(self) -> None:
        [reply] = self.answer("fault-wrong-shape-1")
        assert "namespaces" not in json.loads(reply.body)["result"]

    def test_result_not_json_is_a_string_that_does_not_parse(self) -> None:
        [reply] = self.answer("fault-result-not-json-1")
        result = json.loads(reply.body)["result"]
        assert isinstance(result, str)
        with pytest.raises(ValueError):
            json.loads(result)

    def test_no_request_id_agent_drops_both_ids(self) -> None:
        [reply] = self.answer("fault-no-request-id-1")
        assert "request_id" not in json.loads(reply.body)
        assert reply.correlate is False

    def test_huge_agent_sends_about_five_megabytes(self) -> None:
        [reply] = self.answer("fault-huge-1")
        assert 5_000_000 < len(reply.body) < 6_000_000
        assert json.loads(reply.body)["result"]["total_count"] == 5

    @pytest.mark.parametrize("agent_id, delay", [
        ("slow-3000-a", 3.0), ("fault-late-250-x", 0.25), ("demo-agent-1", 0.0)])
    def test_delays_from_the_agent_id(self, agent_id: str, delay: float) -> None:
        [reply] = self.answer(agent_id)
        assert reply.delay == delay
        assert json.loads(reply.body)["error"] is None

    def test_configured_latency_and_string_result(self) -> None:
        [reply] = self.answer("demo-agent-2", latency={"demo-agent-2": 1.5},
                              result_as_string=True)
        assert reply.delay == 1.5
        assert json.loads(json.loads(reply.body)["result"])["cluster_info"]["cluster_id"] == 5


class TestCommandLine:
    def test_sigterm_prints_a_json_summary_and_exits_cleanly(
            self, config: PeerConfig, tmp_path: Any) -> None:
        stats = tmp_path / "stats.json"
        prefix = config.auth_request_queue[:-len("cluster_auth_requests")]
        env = {**os.environ, "RABBITMQ_HOST": config.host, "RABBITMQ_PORT": str(config.port),
               "RABBITMQ_USER": config.user, "RABBITMQ_PASSWORD": config.password,
               "RABBITMQ_VHOST": config.vhost}
        process = subprocess.Popen(
            [sys.executable, "-m", "devpeers", "--queue-prefix", prefix,
             "--stats-file", str(stats)],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 10
            while not stats.exists() and time.monotonic() < deadline:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                time.sleep(0.05)
            assert stats.exists()
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0
        assert json.loads(stdout.strip())["connections"] == 1
        assert "DEVELOPMENT STAND-IN" in stderr


# ----- cluster operations --------------------------------------------------------------

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*"
                           r"[a-z0-9])?)*$")
GO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
SHAPES = {
    "get-pods": ("pods", {"name", "namespace", "status", "node", "restarts", "age",
                          "containers"}),
    "get-deployments": ("deployments", {"name", "namespace", "replicas", "ready", "available",
                                        "updated", "age", "containers"}),
    "get-services": ("services", {"name", "namespace", "type", "cluster_ip", "external_ip",
                                  "ports", "age", "selector"}),
    "get-nodes": ("nodes", {"name", "status", "roles", "age", "version", "internal_ip",
                            "external_ip", "os", "kernel", "container_runtime"}),
}


def operation(client: PeerClient, config: PeerConfig, command: str, agent_id: str,
              user_id: int = 7, **params: Any) -> str:
    return client.request(config.operation_request_queue, {
        "command": command, "agent_id": agent_id, "cluster_id": 123,
        "params": {"namespace": "", **params}, "user": {"id": user_id, "username": "ana"},
    })


def ask(client: PeerClient, config: PeerConfig, command: str, agent_id: str,
        **params: Any) -> Dict[str, Any]:
    """One operation round trip through the broker; the reply body."""
    request_id = operation(client, config, command, agent_id, **params)
    before = len(client.received[client.reply_queue])
    messages = client.wait(before + 1)
    assert len(messages) == before + 1, f"no reply to {command} for {agent_id}"
    properties, body = messages[-1]
    assert properties.correlation_id == request_id
    reply = json.loads(body)
    assert reply["request_id"] == request_id and reply["agent_id"] == agent_id
    return dict(reply)


def namespaces_reply(client: PeerClient, config: PeerConfig, agent_id: str) -> Dict[str, Any]:
    """One get-namespaces round trip; the reply body."""
    before = len(client.received[client.reply_queue])
    request_id = get_namespaces(client, config, agent_id)
    messages = client.wait(before + 1)
    assert len(messages) == before + 1, f"no namespaces reply for {agent_id}"
    reply = body_of(messages[-1])
    assert reply["request_id"] == request_id
    return reply


def result_of(client: PeerClient, config: PeerConfig, command: str, agent_id: str,
              **params: Any) -> Any:
    reply = ask(client, config, command, agent_id, **params)
    assert reply["error"] is None, reply
    return reply["result"]


class TestOperations:
    """Each command of the operations queue, answered in the Go agent's shapes."""

    @pytest.mark.parametrize("command", sorted(SHAPES))
    def test_lists_have_the_agents_shape_and_a_count(self, peers: DevPeers, client: PeerClient,
                                                     config: PeerConfig, command: str) -> None:
        key, fields = SHAPES[command]
        result = result_of(client, config, command, "demo-agent-1")
        assert set(result) == ({key, "count"} if command == "get-nodes"
                               else {"namespace", key, "count"})
        assert result["count"] == len(result[key]) > 0
        for item in result[key]:
            assert set(item) == fields, item
            assert GO_TIME.match(item["age"]), item["age"]
            assert DNS_SUBDOMAIN.match(item["name"]), item["name"]
            if "namespace" in item:
                assert DNS_LABEL.match(item["namespace"]), item["namespace"]

    def test_pods_are_spread_over_namespaces_and_filtered_by_one(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        every = result_of(client, config, "get-pods", "demo-agent-1")
        assert every["namespace"] == "" and every["count"] == 40   # the default size
        namespaces = {pod["namespace"] for pod in every["pods"]}
        assert {"default", "kube-system", "team-demo-agent-1"} <= namespaces
        system = result_of(client, config, "get-pods", "demo-agent-1", namespace="kube-system")
        assert system["namespace"] == "kube-system"
        assert system["pods"] == [p for p in every["pods"] if p["namespace"] == "kube-system"]
        for pod in every["pods"]:
            assert [set(c) for c in pod["containers"]] == [{"name", "image", "ready"}] * len(
                pod["containers"])

    def test_a_namespace_without_items_is_null_as_the_agent_sends_it(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        for command, key in (("get-pods", "pods"), ("get-deployments", "deployments")):
            result = result_of(client, config, command, "demo-agent-1", namespace="kube-public")
            assert result == {"namespace": "kube-public", key: None, "count": 0}

    def test_ages_carry_offsets_and_up_to_nine_fraction_digits(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        pods = result_of(client, config, "get-pods", "pods-400-ages")["pods"]
        ages = [pod["age"] for pod in pods]
        assert all(GO_TIME.match(age) for age in ages)
        offsets = {age[-6:] if age[-6] in "+-" else "Z" for age in ages}
        assert {"+05:30", "-07:00", "Z", "+00:00"} <= offsets
        assert any(re.search(r"\.\d{9}[+-Z]", age) for age in ages)
        assert any(re.search(r":\d\d[+-Z]", age) for age in ages)   # whole seconds too
        with_offset = next(age for age in ages if age.endswith("+05:30"))
        assert datetime.fromisoformat(with_offset).utcoffset() == timedelta(hours=5, minutes=30)

    def test_summary_agrees_with_the_lists(self, peers: DevPeers, client: PeerClient,
                                           config: PeerConfig) -> None:
        agent = "pods-600-summary"
        summary = result_of(client, config, "get-cluster-resources", agent)
        pods = result_of(client, config, "get-pods", agent)["pods"]
        nodes = result_of(client, config, "get-nodes", agent)["nodes"]
        namespaces = namespaces_reply(client, config, agent)["result"]["namespaces"]
        assert summary["cluster_summary"] == {
            "nodes": len(nodes), "namespaces": len(namespaces), "pods": 600,
            "deployments": result_of(client, config, "get-deployments", agent)["count"],
            "services": result_of(client, config, "get-services", agent)["count"]}
        assert {p["namespace"] for p in pods} <= {ns["name"] for ns in namespaces}
        phases = {phase: sum(p["status"] == phase.capitalize() for p in pods)
                  for phase in ("running", "pending", "failed", "succeeded")}
        assert summary["pods_status"] == phases and sum(phases.values()) == 600
        ready = sum(n["status"] == "Ready" for n in nodes)
        assert summary["nodes_status"] == {"ready": ready, "not_ready": len(nodes) - ready}

    def test_deployments_own_existing_pods_and_services_select_them(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        agent = "pods-300-owners"
        pods = result_of(client, config, "get-pods", agent)["pods"]
        nodes = {n["name"] for n in result_of(client, config, "get-nodes", agent)["nodes"]}
        for deployment in result_of(client, config, "get-deployments", agent)["deployments"]:
            owned = [p for p in pods if p["namespace"] == deployment["namespace"]
                     and re.match(re.escape(deployment["name"]) + r"-[a-z0-9]{10}-[a-z0-9]{5}$",
                                  p["name"])]
            assert len(owned) == deployment["replicas"] > 0, deployment
            assert deployment["ready"] == sum(p["status"] == "Running" for p in owned)
            assert deployment["containers"] == [c["name"] for c in owned[0]["containers"]]
        for service in result_of(client, config, "get-services", agent)["services"]:
            if service["selector"] is None:
                assert service["name"] == "kubernetes"
                continue
            app = next(iter(service["selector"].values()))
            app = {"kube-dns": "coredns"}.get(app, app)   # k8s-app=kube-dns labels coredns
            assert any(p["namespace"] == service["namespace"] and p["name"].startswith(app + "-")
                       for p in pods), service
        assert {p["node"] for p in pods} <= nodes | {""}   # "": a Pending pod is unscheduled

    def test_nodes_have_roles_and_some_have_none(self, peers: DevPeers, client: PeerClient,
                                                 config: PeerConfig) -> None:
        nodes = result_of(client, config, "get-nodes", "pods-1200-nodes")["nodes"]
        assert len(nodes) == 12
        roles = [n["roles"] for n in nodes]
        assert ["control-plane"] in roles and ["worker"] in roles and None in roles

    def test_pod_logs_are_the_last_tail_lines_of_an_existing_pod(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        pods = result_of(client, config, "get-pods", "demo-agent-1")["pods"]
        pod = next(p for p in pods if p["status"] == "Running")
        result = result_of(client, config, "get-pod-logs", "demo-agent-1",
                           namespace=pod["namespace"], pod_name=pod["name"], tail_lines=7)
        assert set(result) == {"namespace", "pod_name", "container_name", "logs", "tail_lines"}
        assert (result["namespace"], result["pod_name"], result["tail_lines"]) == (
            pod["namespace"], pod["name"], 7)
        assert len(result["logs"].splitlines()) == 7
        container = pod["containers"][0]["name"]
        named = result_of(client, config, "get-pod-logs", "demo-agent-1",
                          namespace=pod["namespace"], pod_name=pod["name"],
                          container_name=container, tail_lines=7)
        assert named["logs"] == result["logs"] and named["container_name"] == container
        many = result_of(client, config, "get-pod-logs", "demo-agent-1",
                         namespace=pod["namespace"], pod_name=pod["name"], tail_lines=1000)
        assert len(many["logs"].splitlines()) == 1000

    def test_unknown_pod_or_container_is_the_agents_plain_text(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        missing = result_of(client, config, "get-pod-logs", "demo-agent-1",
                            namespace="default", pod_name="x", tail_lines=10)
        assert missing == 'Failed to get logs: pods "x" not found'
        pod = result_of(client, config, "get-pods", "demo-agent-1",
                        namespace="kube-system")["pods"][0]
        wrong = result_of(client, config, "get-pod-logs", "demo-agent-1",
                          namespace="kube-system", pod_name=pod["name"], container_name="nope")
        assert wrong.startswith("Failed to get logs: container nope is not valid")

    def test_the_same_agent_gets_the_same_cluster(self, peers: DevPeers, client: PeerClient,
                                                  config: PeerConfig) -> None:
        first = result_of(client, config, "get-services", "pods-500-same")
        assert result_of(client, config, "get-services", "pods-500-same") == first
        other = result_of(client, config, "get-services", "pods-500-other")
        assert other != first   # its own team namespace
        assert "team-pods-500-other" in {svc["namespace"] for svc in other["services"]}

    def test_churn_changes_the_pod_and_namespace_lists_on_every_request(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        first = result_of(client, config, "get-pods", "churn-pods-100-c")
        second = result_of(client, config, "get-pods", "churn-pods-100-c")
        assert first["count"] == second["count"] == 100
        names = [{p["name"] for p in r["pods"]} for r in (first, second)]
        assert len(names[0] - names[1]) >= 1 and len(names[1] - names[0]) >= 1
        lists = [[ns["name"] for ns in namespaces_reply(client, config, "churn-pods-100-c")
                  ["result"]["namespaces"]] for _ in range(2)]
        assert lists[0] != lists[1] and len(lists[0]) == len(lists[1])

    def test_agent_null_sends_null_for_every_list(self, peers: DevPeers, client: PeerClient,
                                                  config: PeerConfig) -> None:
        assert result_of(client, config, "get-pods", "agent-null-1")["pods"] is None
        nodes = result_of(client, config, "get-nodes", "agent-null-1")
        assert nodes == {"nodes": None, "count": 0}
        assert namespaces_reply(client, config, "agent-null-1")["result"]["namespaces"] is None

    def test_agent_strings_sends_namespace_names(self, peers: DevPeers, client: PeerClient,
                                                 config: PeerConfig) -> None:
        names = namespaces_reply(client, config, "agent-strings-1")["result"]["namespaces"]
        assert names == ["default", "kube-system", "kube-public", "kube-node-lease",
                         "team-agent-strings-1"]

    def test_string_result_sends_the_result_as_a_json_string(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        result = result_of(client, config, "get-nodes", "string-result-pods-100-s")
        assert isinstance(result, str)
        assert json.loads(result)["count"] == 3

    def test_fault_text_is_a_plain_string_result_without_error(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        result = result_of(client, config, "get-pods", "fault-text-1")
        assert result.startswith("Failed to list pods: pods is forbidden")
        with pytest.raises(ValueError):
            json.loads(result)

    @pytest.mark.parametrize("command", ["get-pods", "get-namespaces"])
    def test_fault_closed_is_the_closed_socket_text_without_error_code(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig, command: str) -> None:
        if command == "get-namespaces":
            reply = namespaces_reply(client, config, "fault-closed-1")
        else:
            reply = ask(client, config, command, "fault-closed-1")
        assert reply["error"] == ("Failed to communicate with agent: received 1000 (OK); "
                                  "then sent 1000 (OK)")
        assert reply["result"] is None and "error_code" not in reply

    def test_unknown_agent_is_not_connected_and_owned_agent_forbidden(
            self, config: PeerConfig, client: PeerClient) -> None:
        config.owners = {"demo-agent-1": 8}
        with DevPeers(config):
            missing = ask(client, config, "get-pods", "no-such-agent")
            other = ask(client, config, "get-pods", "demo-agent-1")
        assert (missing["error_code"], missing["result"]) == ("agent_not_connected", None)
        assert other["error_code"] == "forbidden"

    def test_unknown_command_is_an_error(self, peers: DevPeers, client: PeerClient,
                                         config: PeerConfig) -> None:
        reply = ask(client, config, "delete-pods", "demo-agent-1")
        assert reply["error"] == "Unknown command" and reply["result"] is None

    def test_results_style_answers_on_the_operation_results_queue(
            self, peers: DevPeers, client: PeerClient, config: PeerConfig) -> None:
        peers.set_reply_style("results")
        client.listen(config.operation_result_queue)
        request_id = operation(client, config, "get-nodes", "demo-agent-2")
        [(properties, body)] = client.wait(queue=config.operation_result_queue)
        assert json.loads(body)["request_id"] == request_id
        assert client.received[client.reply_queue] == []
        # The reply can arrive before the peer has counted it: poll, with a deadline.
        wait_for(lambda: peers.counters["replies_operations"] == 1, 5, what="the reply counted")
        assert peers.counters["requests_operations"] == 1


class TestAgentIdGrammar:
    """Traits read from the agent id compose, in any order, before a free name."""

    @pytest.mark.parametrize("agent_id, expected", [
        ("slow-300-pods-5000-bench-1", {"delay_ms": 300, "pods": 5000}),
        ("pods-5000-slow-300-bench-1", {"delay_ms": 300, "pods": 5000}),
        ("churn-agent-strings-x", {"churn": True, "namespace_items": "strings"}),
        ("agent-null-1", {"namespace_items": "null", "null_lists": True}),
        ("string-result-slow-20-a", {"string_result": True, "delay_ms": 20}),
        ("slow-300-fault-text-1", {"delay_ms": 300, "fault": "fault-text-1"}),
        ("demo-agent-1", {"has_traits": False}),
        ("pods-abc", {"has_traits": False}),
        ("web-pods-10", {"has_traits": False}),
    ])
    def test_traits(self, agent_id: str, expected: Dict[str, Any]) -> None:
        traits = parse_agent_id(agent_id)
        for name, value in expected.items():
            assert getattr(traits, name) == value, name
        assert traits.has_traits == expected.get("has_traits", True)

    def test_slow_and_pods_compose_in_an_answer(self) -> None:
        [reply] = Behaviour(PeerConfig()).operations({
            "request_id": "r-1", "command": "get-pods", "agent_id": "slow-300-pods-5000-bench-1",
            "params": {"namespace": ""}, "user": {"id": 7}})
        assert reply.delay == 0.3
        assert json.loads(reply.body)["result"]["count"] == 5000

    def test_default_size_comes_from_the_config(self) -> None:
        [reply] = Behaviour(PeerConfig(pods=123)).operations({
            "request_id": "r-1", "command": "get-pods", "agent_id": "demo-agent-1",
            "params": {}, "user": {"id": 7}})
        assert json.loads(reply.body)["result"]["count"] == 123

    def test_size_and_operation_queues_come_from_the_environment(self) -> None:
        config = PeerConfig.from_env({"DEVPEERS_PODS": "7", "DEVPEERS_QUEUE_PREFIX": "p-",
                                      "OPERATION_REQUEST_QUEUE": "ops-in"})
        assert config.pods == 7
        assert config.operation_request_queue == "p-ops-in"
        assert config.operation_result_queue == "p-cluster_operation_results"
        assert config.request_queues()["operations"] == "p-ops-in"
        config.pods = 0
        with pytest.raises(ValueError, match="DEVPEERS_PODS"):
            config.validate()

    def test_demo_agents_keep_their_five_namespaces(self) -> None:
        [reply] = Behaviour(PeerConfig()).namespaces({
            "request_id": "r-1", "agent_id": "demo-agent-1", "user": {"id": 7}})
        assert json.loads(reply.body)["result"]["total_count"] == 5
