"""Each result parser: the Go agent's shapes in, the API's items out, anything else a 502."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from cluster_service.domain import agent_results
from cluster_service.domain.agent_time import utc_created_at
from cluster_service.errors import RemoteError

AGE = "2024-03-01T17:30:00.123456789+05:30"
UTC = "2024-03-01T12:00:00.123Z"


def pod(**changes: Any) -> dict[str, Any]:
    return {"name": "web-1", "namespace": "default", "status": "Running", "node": "node-1",
            "restarts": 2, "age": AGE,
            "containers": [{"name": "app", "image": "nginx:1.27", "ready": True,
                            "restart_count": 2}], **changes}


class TestAgentTime:
    @pytest.mark.parametrize("age, utc", [
        (AGE, UTC),
        ("2024-03-01T12:00:00Z", "2024-03-01T12:00:00.000Z"),
        ("2024-03-01T05:00:00.5-07:00", "2024-03-01T12:00:00.500Z"),
        ("2024-12-31T23:30:00+00:00", "2024-12-31T23:30:00.000Z"),
        ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00.000Z"),  # Go's zero time
    ])
    def test_any_offset_and_fraction_becomes_utc_milliseconds(self, age: str, utc: str) -> None:
        assert utc_created_at(age) == utc

    @pytest.mark.parametrize("age", ["2024-03-01", "2024-03-01 12:00:00Z", "yesterday",
                                     "2024-03-01T12:00:00", "2024-03-01T12:00:00.1234567890Z",
                                     "0001-01-01T00:00:00+05:30", "2024-13-01T00:00:00Z"])
    def test_anything_else_is_refused(self, age: str) -> None:
        with pytest.raises(ValueError):
            utc_created_at(age)


class TestPods:
    def test_the_agents_pod_becomes_the_apis(self) -> None:
        assert agent_results.pods({"namespace": "", "pods": [pod()], "count": 1}) == [{
            "name": "web-1", "namespace": "default", "status": "Running", "node": "node-1",
            "restarts": 2, "created_at": UTC,
            "containers": [{"name": "app", "image": "nginx:1.27", "ready": True}]}]

    def test_null_lists_are_empty(self) -> None:
        assert agent_results.pods({"pods": None}) == []
        [item] = agent_results.pods({"pods": [pod(containers=None)]})
        assert item["containers"] == []

    def test_an_unscheduled_pod_has_an_empty_node(self) -> None:
        [item] = agent_results.pods({"pods": [pod(node="", status="Pending")]})
        assert (item["node"], item["status"]) == ("", "Pending")

    @pytest.mark.parametrize("result", [
        {}, {"pods": "x"}, {"pods": ["x"]}, {"pods": [pod(name="")]},
        {"pods": [pod(restarts="2")]}, {"pods": [pod(restarts=True)]},
        {"pods": [pod(age="yesterday")]}, {"pods": [pod(containers="x")]},
        {"pods": [pod(containers=[{"name": "a", "image": "b", "ready": "yes"}])]},
        {"pods": [{k: v for k, v in pod().items() if k != "node"}]},
    ], ids=["no-list", "list-string", "entry-string", "empty-name", "restarts-string",
            "restarts-bool", "bad-age", "containers-string", "ready-string", "missing-node"])
    def test_anything_else_is_a_remote_error(self, result: dict[str, Any]) -> None:
        with pytest.raises(RemoteError, match="^Failed to communicate with agent"):
            agent_results.pods(result)


class TestOtherLists:
    def test_deployments(self) -> None:
        result = {"deployments": [{"name": "web", "namespace": "default", "replicas": 3,
                                   "ready": 2, "available": 2, "updated": 3, "age": AGE,
                                   "containers": ["nginx:1.27"]},
                                  {"name": "job", "namespace": "x", "replicas": None,
                                   "ready": 0, "available": 0, "updated": 0, "age": AGE,
                                   "containers": None}]}
        assert agent_results.deployments(result) == [
            {"name": "web", "namespace": "default", "replicas": 3, "ready_replicas": 2,
             "available_replicas": 2, "updated_replicas": 3, "created_at": UTC,
             "containers": ["nginx:1.27"]},
            {"name": "job", "namespace": "x", "replicas": None, "ready_replicas": 0,
             "available_replicas": 0, "updated_replicas": 0, "created_at": UTC,
             "containers": []}]

    def test_services(self) -> None:
        result = {"services": [
            {"name": "web", "namespace": "default", "type": "LoadBalancer",
             "cluster_ip": "198.51.100.10",
             "external_ip": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}],
             "ports": [{"name": "http", "port": 80, "target_port": "8080", "protocol": "TCP"},
                       {"name": "", "port": 443, "target_port": "https", "protocol": "TCP"}],
             "age": AGE, "selector": {"app": "web"}},
            {"name": "headless", "namespace": "default", "type": "ClusterIP",
             "cluster_ip": "None", "external_ip": None, "ports": None, "age": AGE,
             "selector": None}]}
        web, headless = agent_results.services(result)
        assert web["external_ips"] == ["203.0.113.7", "lb.example.com"]
        assert web["ports"][1] == {"name": "", "port": 443, "target_port": "https",
                                   "protocol": "TCP"}
        assert (web["selector"], web["created_at"]) == ({"app": "web"}, UTC)
        assert (headless["external_ips"], headless["ports"], headless["selector"]) == (
            [], [], {})

    def test_nodes(self) -> None:
        node = {"name": "n1", "status": "Ready", "roles": ["control-plane"], "age": AGE,
                "version": "v1.31.2", "internal_ip": "192.0.2.10", "external_ip": "",
                "os": "Ubuntu 24.04", "kernel": "6.8.0", "container_runtime": "containerd://2"}
        [item] = agent_results.nodes({"nodes": [node], "count": 1})
        assert item == {**{k: v for k, v in node.items() if k != "age"}, "created_at": UTC}
        assert agent_results.nodes({"nodes": None}) == []

    @pytest.mark.parametrize("parse, result", [
        (agent_results.deployments, {"deployments": [{"name": "x"}]}),
        (agent_results.services, {"services": [{"name": "x", "namespace": "d", "type": "T",
                                                "cluster_ip": 5, "age": AGE}]}),
        (agent_results.nodes, {"nodes": [{"name": "n", "status": "Ready", "age": AGE}]}),
        (agent_results.namespaces, {"namespaces": [5]}),
    ])
    def test_bad_entries_are_remote_errors(self, parse: Callable[..., Any],
                                           result: dict[str, Any]) -> None:
        with pytest.raises(RemoteError):
            parse(result)


class TestNamespaces:
    def test_plain_strings_are_the_newest_agents_shape(self) -> None:
        assert agent_results.namespaces({"namespaces": ["default", "kube-system"]}) == [
            {"name": "default", "status": "Unknown", "created_at": None, "labels": {},
             "annotations": {}},
            {"name": "kube-system", "status": "Unknown", "created_at": None, "labels": {},
             "annotations": {}}]

    def test_null_is_none(self) -> None:
        assert agent_results.namespaces({"namespaces": None}) == []


class TestSummaryAndLogs:
    def test_summary(self) -> None:
        result = {"cluster_summary": {"nodes": 3, "namespaces": 5, "pods": 40,
                                      "deployments": 7, "services": 9},
                  "nodes_status": {"ready": 2, "not_ready": 1},
                  "pods_status": {"running": 35, "pending": 3, "failed": 1, "succeeded": 1}}
        assert agent_results.summary(result) == {
            "counts": result["cluster_summary"], "nodes_status": result["nodes_status"],
            "pods_status": result["pods_status"]}

    @pytest.mark.parametrize("result", [
        {}, {"cluster_summary": {}, "nodes_status": {}, "pods_status": {"running": -1}},
        {"cluster_summary": {"pods": "4"}, "nodes_status": {}, "pods_status": {}}])
    def test_bad_summary(self, result: dict[str, Any]) -> None:
        with pytest.raises(RemoteError):
            agent_results.summary(result)

    def test_logs(self) -> None:
        assert agent_results.pod_logs({"logs": "a\nb\n", "tail_lines": 2}) == {"logs": "a\nb\n"}
        assert agent_results.pod_logs({"logs": None}) == {"logs": ""}
        with pytest.raises(RemoteError):
            agent_results.pod_logs({"logs": ["a"]})
