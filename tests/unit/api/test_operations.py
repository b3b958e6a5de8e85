"""The cluster operations over a fake broker: bodies, parameters, list conventions, errors."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from ...conftest import API_KEY, BASE
from ...support.fake_transport import FakeTransport

OPS_QUEUE = "cluster_operation_requests"
NS_QUEUE = "cluster_namespace_requests"
HEADERS = {"X-API-Key": API_KEY}
AGE = "2024-03-01T17:30:00.123456789+05:30"
UTC = "2024-03-01T12:00:00.123Z"


def agent_pod(name: str, namespace: str = "default", status: str = "Running") -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "status": status, "node": "node-1",
            "restarts": 0, "age": AGE,
            "containers": [{"name": "app", "image": "nginx:1.27", "ready": True,
                            "restart_count": 0}]}


class FakeAgent:
    """Answers the operations queue as the Onboarding Service would for one cluster."""

    def __init__(self) -> None:
        self.pods = [agent_pod("web-2"), agent_pod("web-1"),
                     agent_pod("db-0", "data", "Pending")]
        self.requests: list[dict[str, Any]] = []
        self.as_string = False
        self.reply: dict[str, Any] | None = None  # replaces the whole answer when set

    def __call__(self, body: dict[str, Any]) -> list[tuple[Any, float]]:
        self.requests.append(body)
        if self.reply is not None:
            return [({"request_id": body["request_id"], **self.reply}, 0)]
        result = self.result(body["command"], body["params"])
        if self.as_string:
            result = json.dumps(result)
        return [({"request_id": body["request_id"], "agent_id": body["agent_id"],
                  "result": result, "error": None}, 0)]

    def result(self, command: str, params: dict[str, Any]) -> Any:
        namespace = params.get("namespace", "")
        if command == "get-pods":
            pods = [p for p in self.pods if not namespace or p["namespace"] == namespace]
            return {"namespace": namespace, "pods": pods or None, "count": len(pods)}
        if command == "get-deployments":
            return {"namespace": namespace, "count": 1, "deployments": [
                {"name": "web", "namespace": "default", "replicas": 2, "ready": 2,
                 "available": 2, "updated": 2, "age": AGE, "containers": ["nginx:1.27"]}]}
        if command == "get-services":
            return {"namespace": namespace, "count": 1, "services": [
                {"name": "web", "namespace": "default", "type": "ClusterIP",
                 "cluster_ip": "198.51.100.10", "external_ip": None,
                 "ports": [{"name": "http", "port": 80, "target_port": "8080",
                            "protocol": "TCP"}], "age": AGE, "selector": {"app": "web"}}]}
        if command == "get-nodes":
            return {"count": 1, "nodes": [
                {"name": "node-1", "status": "Ready", "roles": ["worker"], "age": AGE,
                 "version": "v1.31.2", "internal_ip": "192.0.2.10", "external_ip": "",
                 "os": "Ubuntu", "kernel": "6.8", "container_runtime": "containerd://2.0"}]}
        if command == "get-cluster-resources":
            return {"cluster_summary": {"nodes": 1, "namespaces": 2, "pods": 3,
                                        "deployments": 1, "services": 1},
                    "nodes_status": {"ready": 1, "not_ready": 0},
                    "pods_status": {"running": 2, "pending": 1, "failed": 0, "succeeded": 0}}
        if command == "get-pod-logs":
            lines = [f"line {n}" for n in range(params["tail_lines"])]
            return {"namespace": namespace, "pod_name": params["pod_name"],
                    "container_name": params["container_name"], "logs": "\n".join(lines) + "\n",
                    "tail_lines": params["tail_lines"]}
        raise AssertionError(command)


@pytest.fixture
def agent(transport: FakeTransport) -> FakeAgent:
    fake = FakeAgent()
    transport.responders[OPS_QUEUE] = fake
    return fake


def get(client: FlaskClient, path: str, headers: dict[str, str] | None = None,
        **query: Any) -> Any:
    return client.get(f"{BASE}{path}", query_string={"agent_id": "agent-1", **query},
                      headers={**HEADERS, **(headers or {})})


def error_of(response: Any, status: int, error: str = "invalid_request") -> str:
    body = response.get_json()
    assert response.status_code == status, body
    assert body["error"] == error
    return body["message"]  # type: ignore[no-any-return]


class TestBodies:
    def test_pods(self, client: FlaskClient, agent: FakeAgent) -> None:
        response = get(client, "/pods", cluster_id="7")
        body = response.get_json()
        assert response.status_code == 200
        assert list(body) == ["success", "agent_id", "cluster_id", "namespace", "pods",
                              "total_count", "timestamp"]
        assert (body["cluster_id"], body["namespace"], body["total_count"]) == (7, None, 3)
        assert body["pods"][0] == {
            "name": "web-2", "namespace": "default", "status": "Running", "node": "node-1",
            "restarts": 0, "created_at": UTC,
            "containers": [{"name": "app", "image": "nginx:1.27", "ready": True}]}
        assert response.headers["Cache-Control"] == "no-store"

    def test_the_request_carries_the_agents_parameter_names(
            self, client: FlaskClient, agent: FakeAgent) -> None:
        get(client, "/pods", namespace="data", cluster_id="9")
        [request] = agent.requests
        assert {k: v for k, v in request.items() if k not in ("request_id", "timestamp")} == {
            "command": "get-pods", "agent_id": "agent-1", "cluster_id": 9,
            "params": {"namespace": "data"}, "user": {"id": 7, "username": "ana"}}
        get(client, "/pods")
        assert agent.requests[1]["params"] == {"namespace": ""}

    @pytest.mark.parametrize("path, key, item_keys", [
        ("/deployments", "deployments", ["name", "namespace", "replicas", "ready_replicas",
                                         "available_replicas", "updated_replicas",
                                         "created_at", "containers"]),
        ("/services", "services", ["name", "namespace", "type", "cluster_ip", "external_ips",
                                   "ports", "selector", "created_at"]),
        ("/nodes", "nodes", ["name", "status", "roles", "created_at", "version",
                             "internal_ip", "external_ip", "os", "kernel",
                             "container_runtime"]),
    ])
    def test_other_lists(self, client: FlaskClient, agent: FakeAgent, path: str, key: str,
                         item_keys: list[str]) -> None:
        body = get(client, path).get_json()
        assert body["total_count"] == 1 and sorted(body[key][0]) == sorted(item_keys)
        assert body[key][0]["created_at"] == UTC

    def test_summary(self, client: FlaskClient, agent: FakeAgent) -> None:
        body = get(client, "/summary").get_json()
        assert list(body) == ["success", "agent_id", "cluster_id", "counts", "nodes_status",
                              "pods_status", "timestamp"]
        assert body["counts"]["pods"] == 3 and body["pods_status"]["pending"] == 1

    def test_results_sent_as_json_strings(self, client: FlaskClient, agent: FakeAgent) -> None:
        agent.as_string = True
        assert get(client, "/pods").get_json()["total_count"] == 3

    def test_null_list_is_empty(self, client: FlaskClient, agent: FakeAgent) -> None:
        body = get(client, "/pods", namespace="nothing-here").get_json()
        assert (body["pods"], body["total_count"]) == ([], 0)


class TestLogs:
    def test_json(self, client: FlaskClient, agent: FakeAgent) -> None:
        response = get(client, "/pods/web-1/logs", namespace="default", tail_lines="3")
        body = response.get_json()
        assert list(body) == ["success", "agent_id", "cluster_id", "namespace", "pod",
                              "container", "tail_lines", "logs", "timestamp"]
        assert (body["pod"], body["container"], body["tail_lines"]) == ("web-1", None, 3)
        assert body["logs"] == "line 0\nline 1\nline 2\n"
        assert agent.requests[0]["params"] == {"namespace": "default", "pod_name": "web-1",
                                               "container_name": "", "tail_lines": 3}

    def test_text_when_asked(self, client: FlaskClient, agent: FakeAgent) -> None:
        response = get(client, "/pods/web-1/logs", headers={"Accept": "text/plain"},
                       namespace="default", container="app")
        assert response.status_code == 200
        assert response.content_type == "text/plain; charset=utf-8"
        assert response.get_data(as_text=True).count("\n") == 100  # the default tail
        assert response.headers["Cache-Control"] == "no-store"
        assert agent.requests[0]["params"]["container_name"] == "app"

    def test_errors_stay_json_even_when_text_is_asked(self, client: FlaskClient,
                                                      agent: FakeAgent) -> None:
        response = get(client, "/pods/web-1/logs", headers={"Accept": "text/plain"})
        assert error_of(response, 400) == "namespace: is required"


class TestInput:
    @pytest.mark.parametrize("path, query, named", [
        ("/pods", {"namespace": "Bad_NS"}, "namespace: "),
        ("/pods", {"namespace": "-a"}, "namespace: "),
        ("/pods", {"namespace": "a" * 64}, "namespace: "),
        ("/pods", {"limit": "0"}, "limit: "),
        ("/pods", {"limit": "1001"}, "limit: "),
        ("/pods", {"limit": "1e3"}, "limit: "),
        ("/pods", {"fieldSelector": "spec.hostIP=x"}, "fieldSelector: unknown field"),
        ("/pods", {"fieldSelector": "status.phase~Running"}, "fieldSelector: "),
        ("/pods", {"labelSelector": "app=web"}, "labelSelector: not supported on /pods"),
        ("/namespaces", {"labelSelector": "app in web"}, "labelSelector: "),
        ("/nodes", {"fieldSelector": "spec.nodeName=n1"}, "fieldSelector: unknown field"),
        ("/pods/web-1/logs", {}, "namespace: is required"),
        ("/pods/web-1/logs", {"namespace": "default", "tail_lines": "0"}, "tail_lines: "),
        ("/pods/web-1/logs", {"namespace": "default", "tail_lines": "10001"}, "tail_lines: "),
        ("/pods/web-1/logs", {"namespace": "default", "tail_lines": "-5"}, "tail_lines: "),
        ("/pods/web-1/logs", {"namespace": "default", "container": "App"}, "container: "),
        ("/pods/Web_1/logs", {"namespace": "default"}, "pod: "),
        (f"/pods/{'a' * 254}/logs", {"namespace": "default"}, "pod: "),
    ])
    def test_bad_input_is_400_naming_the_field(self, client: FlaskClient, agent: FakeAgent,
                                               path: str, query: dict[str, str],
                                               named: str) -> None:
        assert error_of(get(client, path, **query), 400).startswith(named)
        assert agent.requests == []  # refused before anything reached the agent

    def test_no_key_is_401(self, client: FlaskClient, agent: FakeAgent) -> None:
        response = client.get(f"{BASE}/pods?agent_id=a")
        assert error_of(response, 401, "authentication_failed")
        assert response.headers["Cache-Control"] == "no-store"


class TestLists:
    def test_selectors(self, client: FlaskClient, agent: FakeAgent) -> None:
        body = get(client, "/pods", fieldSelector="status.phase!=Running").get_json()
        assert [p["name"] for p in body["pods"]] == ["db-0"]
        body = get(client, "/pods", fieldSelector="metadata.namespace=default,"
                                                  "metadata.name=web-1").get_json()
        assert [p["name"] for p in body["pods"]] == ["web-1"]

    def test_pages_each_item_once(self, client: FlaskClient, agent: FakeAgent) -> None:
        names, token = [], None
        while True:
            query = {"limit": "2", **({"continue": token} if token else {})}
            body = get(client, "/pods", **query).get_json()
            names += [(p["namespace"], p["name"]) for p in body["pods"]]
            assert body["total_count"] == len(body["pods"])
            token = body["continue"]
            if token is None:
                break
        assert names == [("data", "db-0"), ("default", "web-1"), ("default", "web-2")]

    def test_a_changed_list_is_410(self, client: FlaskClient, agent: FakeAgent) -> None:
        token = get(client, "/pods", limit="2").get_json()["continue"]
        agent.pods.append(agent_pod("web-3"))
        response = get(client, "/pods", limit="2", **{"continue": token})
        assert error_of(response, 410, "continue_expired")

    def test_a_token_that_cannot_be_read_is_410(self, client: FlaskClient,
                                                agent: FakeAgent) -> None:
        response = get(client, "/pods", limit="5", **{"continue": "not-ours"})
        assert error_of(response, 410, "continue_expired")
        assert agent.requests == []  # refused before anything reached the agent

    def test_an_empty_label_selector_is_no_selector(self, client: FlaskClient,
                                                    agent: FakeAgent) -> None:
        assert get(client, "/pods", labelSelector="").get_json()["total_count"] == 3

    def test_a_token_of_another_query_is_410(self, client: FlaskClient,
                                             agent: FakeAgent) -> None:
        token = get(client, "/pods", limit="1").get_json()["continue"]
        response = get(client, "/pods", limit="1", namespace="default", **{"continue": token})
        assert error_of(response, 410, "continue_expired")

    def test_namespaces_keep_their_body_and_page_too(self, client: FlaskClient) -> None:
        body = get(client, "/namespaces", limit="1").get_json()
        assert list(body) == ["success", "agent_id", "cluster_id", "namespaces",
                              "total_count", "continue", "message", "timestamp"]
        body = get(client, "/namespaces", labelSelector="kubernetes.io/metadata.name").get_json()
        assert [n["name"] for n in body["namespaces"]] == ["default"]
        assert "continue" not in body


class TestAgentFailures:
    @pytest.mark.parametrize("reply, status, error", [
        ({"result": "Not running in-cluster", "error": None}, 502, "agent_error"),
        ({"result": "Failed to list pods: forbidden", "error": None}, 502, "agent_error"),
        ({"result": None, "error": "Failed to communicate with agent: received 1000 (OK); "
                                   "then sent 1000 (OK)"}, 404, "agent_not_connected"),
        ({"result": {"pods": 5}, "error": None}, 502, "agent_error"),
        ({"result": None, "error": "nope", "error_code": "forbidden"}, 403, "forbidden"),
    ], ids=["not-in-cluster", "list-failed", "closed-socket", "wrong-shape", "forbidden"])
    def test_mapped(self, client: FlaskClient, agent: FakeAgent, reply: dict[str, Any],
                    status: int, error: str) -> None:
        agent.reply = reply
        response = get(client, "/pods")
        message = error_of(response, status, error)
        assert "forbidden" not in message.lower() or status == 403
        assert "in-cluster" not in message

    def test_a_reply_over_the_operations_bound_is_502(
            self, make_app: Callable[..., Flask], transport: FakeTransport,
            agent: FakeAgent) -> None:
        agent.pods = [agent_pod(f"web-{n}") for n in range(50)]
        client = make_app(MAX_OPERATION_REPLY_BYTES="4096").test_client()
        assert error_of(get(client, "/pods"), 502, "agent_error")
        agent.pods = agent.pods[:2]
        assert get(client, "/pods").status_code == 200

    def test_an_onboarding_service_without_the_queue_is_503_at_once(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        transport.consumers[OPS_QUEUE] = 0
        response = make_app().test_client().get(f"{BASE}/pods?agent_id=a", headers=HEADERS)
        assert "Onboarding Service" in error_of(response, 503, "service_unavailable")
