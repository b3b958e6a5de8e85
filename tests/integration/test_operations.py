"""The cluster operations end to end: real broker, real gunicorn, the stand-in peers.

The peers answer as the KubeSage agent does (``devpeers``): offsets and
nanoseconds in ``age``, ``null`` lists, results sent as JSON strings, plain-text
failures, the Onboarding Service's "received 1000" text, namespaces as plain
strings; agents that take 0.3 s. Paging is walked across two replicas.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Iterator

import pytest
import requests

from ..support.legacy_peers import LegacyPeers, legacy_properties, legacy_timestamp
from ..support.peers import delete_queues, start_peers
from ..support.service import ServiceProcess, queue_env

pytestmark = [pytest.mark.rabbitmq, pytest.mark.gunicorn]

KEY = {"X-API-Key": "demo-key"}
UTC_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServiceProcess]]:
    """Two replicas of two workers each on the same queues, and the stand-in peers."""
    prefix = f"t-{uuid.uuid4().hex[:10]}-"
    peers = start_peers(prefix)
    services = [ServiceProcess(tmp_path_factory.mktemp(f"ops-{n}"), {
        **queue_env(prefix), "WEBSOCKET_TIMEOUT": "10"}) for n in (1, 2)]
    try:
        for service in services:
            service.start()
        yield services
    finally:
        for service in services:
            service.stop()
        peers.stop()
        delete_queues(prefix)


@pytest.fixture
def service(replicas: list[ServiceProcess]) -> ServiceProcess:
    return replicas[0]


def get(service: ServiceProcess, path: str, agent: str = "slow-300-demo", **params: Any) -> Any:
    return requests.get(service.base_url + path, params={"agent_id": agent, **params},
                        headers={**KEY, **params.pop("headers", {})}, timeout=20)


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    return response.json()  # type: ignore[no-any-return]


class TestEachOperation:
    def test_pods(self, service: ServiceProcess) -> None:
        body = ok(get(service, "/pods", cluster_id=5))
        assert (body["agent_id"], body["cluster_id"], body["namespace"]) == (
            "slow-300-demo", 5, None)
        assert body["total_count"] == len(body["pods"]) == 40
        pod = body["pods"][0]
        assert set(pod) == {"name", "namespace", "status", "node", "restarts", "created_at",
                            "containers"}
        assert all(UTC_MS.match(p["created_at"]) for p in body["pods"])
        namespace = pod["namespace"]
        only = ok(get(service, "/pods", namespace=namespace))
        assert only["namespace"] == namespace
        assert {p["namespace"] for p in only["pods"]} == {namespace}

    @pytest.mark.parametrize("path, key", [("/deployments", "deployments"),
                                           ("/services", "services"), ("/nodes", "nodes"),
                                           ("/namespaces", "namespaces")])
    def test_lists(self, service: ServiceProcess, path: str, key: str) -> None:
        body = ok(get(service, path))
        assert body["total_count"] == len(body[key]) > 0
        if key != "namespaces":
            assert all(UTC_MS.match(item["created_at"]) for item in body[key])

    def test_summary_agrees_with_the_lists(self, service: ServiceProcess) -> None:
        summary = ok(get(service, "/summary"))
        assert summary["counts"]["pods"] == ok(get(service, "/pods"))["total_count"]
        assert summary["counts"]["nodes"] == ok(get(service, "/nodes"))["total_count"]

    def test_logs_as_json_and_as_text(self, service: ServiceProcess) -> None:
        pod = ok(get(service, "/pods"))["pods"][0]
        path = f"/pods/{pod['name']}/logs"
        body = ok(get(service, path, namespace=pod["namespace"], tail_lines=25))
        assert (body["pod"], body["tail_lines"], body["container"]) == (pod["name"], 25, None)
        assert len(body["logs"].splitlines()) == 25
        text = get(service, path, namespace=pod["namespace"], tail_lines=25,
                   headers={"Accept": "text/plain"})
        assert text.status_code == 200
        assert text.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert text.text == body["logs"]

    def test_openapi_documents_every_operation(self, service: ServiceProcess) -> None:
        paths = service.get("/openapi.json").json()["paths"]
        for path in ("/pods", "/deployments", "/services", "/nodes", "/summary",
                     "/pods/{pod}/logs"):
            assert f"/api/v3.0/cluster{path}" in paths


class TestAgentShapes:
    def test_null_lists_are_empty(self, service: ServiceProcess) -> None:
        for path, key in (("/pods", "pods"), ("/namespaces", "namespaces"),
                          ("/nodes", "nodes")):
            body = ok(get(service, path, agent="agent-null-1"))
            assert (body[key], body["total_count"]) == ([], 0)

    def test_results_sent_as_json_strings(self, service: ServiceProcess) -> None:
        assert ok(get(service, "/pods", agent="string-result-1"))["total_count"] == 40

    def test_namespaces_as_plain_strings(self, service: ServiceProcess) -> None:
        body = ok(get(service, "/namespaces", agent="agent-strings-1"))
        assert body["namespaces"][0]["status"] == "Unknown"
        assert body["namespaces"][0]["created_at"] is None

    def test_plain_text_failure_is_502_without_the_text(self, service: ServiceProcess) -> None:
        response = get(service, "/pods", agent="fault-text-1")
        assert response.status_code == 502, response.text
        body = response.json()
        assert body["error"] == "agent_error"
        assert body["message"].startswith("Failed to communicate with agent")
        assert "forbidden" not in body["message"]

    def test_received_1000_is_agent_not_connected(self, service: ServiceProcess) -> None:
        response = get(service, "/pods", agent="fault-closed-1")
        assert response.status_code == 404, response.text
        assert response.json()["error"] == "agent_not_connected"


class TestInput:
    @pytest.mark.parametrize("path, params, named", [
        ("/pods", {"namespace": "Kube_System"}, "namespace: "),
        ("/pods", {"limit": "5000"}, "limit: "),
        ("/pods", {"fieldSelector": "spec.hostIP=1"}, "fieldSelector: unknown field"),
        ("/namespaces", {"labelSelector": "env in prod"}, "labelSelector: "),
        ("/pods/web-1/logs", {"namespace": "default", "tail_lines": "20000"}, "tail_lines: "),
        ("/pods/web-1/logs", {"namespace": "default", "container": "-x"}, "container: "),
        ("/pods/WEB/logs", {"namespace": "default"}, "pod: "),
    ])
    def test_is_400_naming_the_field(self, service: ServiceProcess, path: str,
                                     params: dict[str, str], named: str) -> None:
        response = get(service, path, **params)
        assert response.status_code == 400, response.text
        assert response.json()["message"].startswith(named)


def walk(replicas: list[ServiceProcess], agent: str, limit: int,
         **params: Any) -> tuple[list[tuple[str, str]], Any]:
    """Page through a list, each page from the next replica (new connections)."""
    seen: list[tuple[str, str]] = []
    token = None
    for page in range(200):
        query = {"limit": limit, **params, **({"continue": token} if token else {})}
        response = get(replicas[page % len(replicas)], "/pods", agent=agent, **query)
        if response.status_code != 200:
            return seen, response
        body = response.json()
        assert body["total_count"] == len(body["pods"]) <= limit
        seen += [(p["namespace"], p["name"]) for p in body["pods"]]
        token = body["continue"]
        if token is None:
            return seen, response
    raise AssertionError("the walk did not end")


class TestPaging:
    def test_every_item_once_across_replicas(self, replicas: list[ServiceProcess]) -> None:
        seen, last = walk(replicas, "pods-450-paged", 100)
        whole = ok(get(replicas[0], "/pods", agent="pods-450-paged"))["pods"]
        assert last.status_code == 200
        assert seen == sorted((p["namespace"], p["name"]) for p in whole)
        assert len(set(seen)) == len(seen) == 450

    def test_with_a_field_selector(self, replicas: list[ServiceProcess]) -> None:
        seen, _ = walk(replicas, "pods-300-sel", 40, fieldSelector="status.phase=Running")
        whole = ok(get(replicas[0], "/pods", agent="pods-300-sel",
                       fieldSelector="status.phase=Running"))["pods"]
        assert seen == sorted((p["namespace"], p["name"]) for p in whole)
        assert 0 < len(seen) < 300

    def test_a_changed_list_is_410(self, replicas: list[ServiceProcess]) -> None:
        seen, last = walk(replicas, "churn-pods-120-x", 50)
        assert last.status_code == 410, last.text
        assert last.json()["error"] == "continue_expired"
        assert len(seen) == 50  # the first page, then the refusal: never a different list


def test_a_large_cluster_is_served_whole_and_paged(service: ServiceProcess) -> None:
    body = ok(get(service, "/pods", agent="pods-20000-large"))
    assert body["total_count"] == 20000
    page = ok(get(service, "/pods", agent="pods-20000-large", limit=1000))
    assert page["total_count"] == 1000 and page["continue"]


def test_an_onboarding_service_without_the_queue_is_503_at_once(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    prefix = f"t-{uuid.uuid4().hex[:10]}-"
    names = queue_env(prefix)

    def auth(body: dict[str, Any]) -> dict[str, Any]:
        return {"request_id": body["request_id"], "timestamp": legacy_timestamp(),
                "valid": True, "user_data": {"id": 7, "username": "ana",
                                             "is_active": True}}

    peers = LegacyPeers({names["AUTH_REQUEST_QUEUE"]: auth},
                        {names["AUTH_REQUEST_QUEUE"]: names["AUTH_RESULT_QUEUE"]},
                        legacy_properties).start()
    service = ServiceProcess(tmp_path_factory.mktemp("old-peer"),
                             {**names, "WEBSOCKET_TIMEOUT": "30"})
    try:
        service.start()
        started = time.monotonic()
        response = get(service, "/pods")  # the client gives up after 20 s, the agent's 30
        assert response.status_code == 503, response.text
        assert "Onboarding Service" in response.json()["message"]
        assert response.headers["Retry-After"]
        assert time.monotonic() - started < 20
    finally:
        service.stop()
        peers.stop()
        delete_queues(prefix)
