"""The agent's ``result`` objects (contract §2) checked and turned into the API's items.

One parser per command. Each takes the ``result`` object as the KubeSage agent
builds it and returns plain dicts already in the shape the HTTP body shows
(contract §1), every value of the type the response schema documents, so the
views dump them without converting each value again. Whatever does not fit is
the peer's fault: :class:`RemoteError` (502), naming the list, never echoing
the peer's data.

The shapes follow the Go agent: lists may be ``null`` (none), ``age`` is a Go
``time.Time`` (RFC 3339, any offset, nanoseconds), a service's ``external_ip``
is the load balancer's ingress list, ``target_port`` an int-or-name string,
a deployment's ``replicas`` a pointer (null when unset). Keys the agent adds
that the API does not name (a container's ``restart_count``) are dropped.
The loops are written out by hand: a 20,000-pod list goes through them on
every request.
"""

from __future__ import annotations

from typing import Any, Callable

from ..errors import RemoteError
from .agent_time import utc_created_at

Item = dict[str, Any]


def _list(result: dict[str, Any], key: str) -> list[Any]:
    """The list under ``key``: ``null`` is none; an absent key is a reply of another shape."""
    if key not in result:
        raise RemoteError(f"result has no {key} list")
    items = result[key]
    if items is None:
        return []
    if type(items) is not list:
        raise RemoteError(f"result has no {key} list")
    return items


def _bad(kind: str) -> RemoteError:
    return RemoteError(f"{kind} list holds an invalid entry")


def _created_at(age: Any, kind: str) -> str | None:
    if age is None:
        return None
    if type(age) is not str:
        raise _bad(kind)
    try:
        return utc_created_at(age)
    except ValueError:
        raise _bad(kind) from None


def _strings(values: Any, kind: str) -> list[str]:
    if values is None:
        return []
    if type(values) is not list or not all(type(value) is str for value in values):
        raise _bad(kind)
    return values


def _string_map(values: Any, kind: str) -> dict[str, str]:
    if values is None:
        return {}
    if type(values) is not dict or not all(type(value) is str for value in values.values()):
        raise _bad(kind)
    return values


def pods(result: dict[str, Any]) -> list[Item]:
    """``get-pods``: ``{"namespace", "pods": [...] or null, "count"}``.

    Each item replaces the agent's in the same list, so the agent's dicts are freed
    as the loop goes: a 20,000-pod list never exists twice.
    """
    out = _list(result, "pods")
    for index, pod in enumerate(out):
        try:
            name, namespace, status = pod["name"], pod["namespace"], pod["status"]
            node, restarts, containers = pod["node"], pod["restarts"], pod["containers"]
            age = pod["age"]
        except (KeyError, TypeError):
            raise _bad("pods") from None
        if not (type(name) is str and name and type(namespace) is str
                and type(status) is str and type(node) is str and type(restarts) is int):
            raise _bad("pods")
        if containers is None:
            containers = []
        elif type(containers) is not list:
            raise _bad("pods")
        checked = []
        for container in containers:
            try:
                c_name, image, ready = container["name"], container["image"], container["ready"]
            except (KeyError, TypeError):
                raise _bad("pods") from None
            if not (type(c_name) is str and type(image) is str and type(ready) is bool):
                raise _bad("pods")
            checked.append({"name": c_name, "image": image, "ready": ready})
        out[index] = {"name": name, "namespace": namespace, "status": status, "node": node,
                      "restarts": restarts, "created_at": _created_at(age, "pods"),
                      "containers": checked}
    return out


def _count(value: Any, kind: str, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if type(value) is not int:
        raise _bad(kind)
    return value


def deployments(result: dict[str, Any]) -> list[Item]:
    """``get-deployments``: ``{"namespace", "deployments": [...] or null, "count"}``."""
    out = []
    for item in _list(result, "deployments"):
        try:
            name, namespace = item["name"], item["namespace"]
            out.append({
                "name": name, "namespace": namespace,
                "replicas": _count(item["replicas"], "deployments", nullable=True),
                "ready_replicas": _count(item["ready"], "deployments"),
                "available_replicas": _count(item["available"], "deployments"),
                "updated_replicas": _count(item["updated"], "deployments"),
                "created_at": _created_at(item["age"], "deployments"),
                "containers": _strings(item["containers"], "deployments")})
        except (KeyError, TypeError):
            raise _bad("deployments") from None
        if not (type(name) is str and name and type(namespace) is str):
            raise _bad("deployments")
    return out


def _ingress(entries: Any) -> list[str]:
    if entries is None:
        return []
    if type(entries) is not list:
        raise _bad("services")
    addresses = []
    for entry in entries:
        if type(entry) is not dict:
            raise _bad("services")
        address = entry.get("ip") or entry.get("hostname")
        if address is not None:
            if type(address) is not str:
                raise _bad("services")
            addresses.append(address)
    return addresses


def _ports(entries: Any) -> list[Item]:
    if entries is None:
        return []
    if type(entries) is not list:
        raise _bad("services")
    ports = []
    for entry in entries:
        try:
            name, port, target, protocol = (entry["name"], entry["port"], entry["target_port"],
                                            entry["protocol"])
        except (KeyError, TypeError):
            raise _bad("services") from None
        if type(target) is int:
            target = str(target)
        if not (type(name) is str and type(port) is int and type(target) is str
                and type(protocol) is str):
            raise _bad("services")
        ports.append({"name": name, "port": port, "target_port": target, "protocol": protocol})
    return ports


def services(result: dict[str, Any]) -> list[Item]:
    """``get-services``: ``{"namespace", "services": [...] or null, "count"}``."""
    out = []
    for item in _list(result, "services"):
        try:
            name, namespace, kind, cluster_ip = (item["name"], item["namespace"], item["type"],
                                                 item["cluster_ip"])
            out.append({
                "name": name, "namespace": namespace, "type": kind, "cluster_ip": cluster_ip,
                "external_ips": _ingress(item.get("external_ip")),
                "ports": _ports(item.get("ports")),
                "selector": _string_map(item.get("selector"), "services"),
                "created_at": _created_at(item["age"], "services")})
        except (KeyError, TypeError):
            raise _bad("services") from None
        if not (type(name) is str and name and type(namespace) is str and type(kind) is str
                and type(cluster_ip) is str):
            raise _bad("services")
    return out


_NODE_TEXT = ("version", "internal_ip", "external_ip", "os", "kernel", "container_runtime")


def nodes(result: dict[str, Any]) -> list[Item]:
    """``get-nodes``: ``{"nodes": [...] or null, "count"}``."""
    out = []
    for item in _list(result, "nodes"):
        try:
            node = {"name": item["name"], "status": item["status"],
                    "roles": _strings(item.get("roles"), "nodes"),
                    "created_at": _created_at(item["age"], "nodes")}
            node.update((key, item[key]) for key in _NODE_TEXT)
        except (KeyError, TypeError):
            raise _bad("nodes") from None
        if not (type(node["name"]) is str and node["name"] and type(node["status"]) is str
                and all(type(node[key]) is str for key in _NODE_TEXT)):
            raise _bad("nodes")
        out.append(node)
    return out


_SUMMARY = (("counts", "cluster_summary", ("nodes", "namespaces", "pods", "deployments",
                                           "services")),
            ("nodes_status", "nodes_status", ("ready", "not_ready")),
            ("pods_status", "pods_status", ("running", "pending", "failed", "succeeded")))


def summary(result: dict[str, Any]) -> Item:
    """``get-cluster-resources``: counts of each kind and of node and pod states."""
    out = {}
    for name, key, counts in _SUMMARY:
        part = result.get(key)
        if type(part) is not dict:
            raise RemoteError(f"result has no {key} object")
        values = {count: part.get(count, 0) for count in counts}
        if not all(type(value) is int and value >= 0 for value in values.values()):
            raise RemoteError(f"{key} holds an invalid count")
        out[name] = values
    return out


def pod_logs(result: dict[str, Any]) -> Item:
    """``get-pod-logs``: the text (the request names the pod, container and tail)."""
    logs = result.get("logs")
    if logs is None:
        logs = ""
    if type(logs) is not str:
        raise RemoteError("result has no logs text")
    return {"logs": logs}


def namespaces(result: dict[str, Any]) -> list[Item]:
    """``get-namespaces``: objects (the Onboarding Service's shape) or plain names (the
    newest agent's); ``null`` is none."""
    out: list[Item] = []
    for item in _list(result, "namespaces"):
        if type(item) is str and item:
            out.append({"name": item, "status": "Unknown", "created_at": None,
                        "labels": {}, "annotations": {}})
            continue
        if type(item) is not dict or type(item.get("name")) is not str or not item["name"]:
            raise _bad("namespaces")
        labels, annotations = item.get("labels") or {}, item.get("annotations") or {}
        status = item.get("status")
        created = item.get("createdAt", item.get("created_at"))
        if type(labels) is not dict or type(annotations) is not dict:
            raise RemoteError("namespace labels or annotations are not objects")
        out.append({"name": item["name"],
                    "status": status if type(status) is str and status else "Unknown",
                    "created_at": created if type(created) is str else None,
                    "labels": labels, "annotations": annotations})
    return out


Parser = Callable[[dict[str, Any]], Any]
