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
import signal
import subprocess
import sys
import time
import uuid
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pika
import pytest

from devpeers import Behaviour, DevPeers, PeerConfig, Reply
from devpeers.config import fingerprint, parse_api_keys

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
