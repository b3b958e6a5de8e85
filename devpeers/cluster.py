"""A fake Kubernetes cluster, deterministic per agent id and size, in the Go agent's shapes.

The cluster of n pods has nodes (a control plane and workers, one roughly per
100 pods), `kube-system` (coredns, metrics-server, the control plane's static
pods, one kube-proxy per node), the agent's own `team-<agent id>` namespace
(a few deployments, a StatefulSet, a finished job), two pods in `default`, and
the rest in application namespaces of about 250 pods each (`shop`, `payments`,
... then `shop-2`, ...). Pods belong to deployments (whose `ready` counts agree
with them) or to StatefulSets and jobs; services select deployments' pods.

Only the agent's own namespace depends on the agent id: every other namespace
depends on the size alone, so agents of one size share their cached bytes
(`operations.py`). Every dict here is a Go agent `result` item, keys in the
agent's order; `age` is a Go `time.Time` as JSON: RFC 3339 with the agent
host's offset (`Z`, `+05:30`, `-07:00`, ...) and a fraction of up to nine
digits, trailing zeros dropped. Nothing here touches the broker.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple

KUBERNETES_VERSION = "v1.29.4"
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
TEAM_PODS = 28
DEFAULT_PODS = 2
PODS_PER_APP_NAMESPACE = 250
PODS_PER_NODE = 100
MAX_NODES = 1000

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"   # what Kubernetes' generated names use
_EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
# (minutes east of UTC, suffix) as Go prints them: "Z" only for UTC itself.
_OFFSETS = ((0, "Z"), (330, "+05:30"), (-420, "-07:00"), (60, "+01:00"), (0, "+00:00"),
            (540, "+09:00"), (-210, "-03:30"), (-300, "-05:00"))
# RFC3339Nano fractions: up to nine digits, trailing zeros trimmed, none for whole seconds.
_FRACTIONS = ("", ".123456789", "", ".5", ".04", ".000000001", "", ".987654321", ".25")
APP_NAMESPACES = ("shop", "payments", "search", "analytics", "identity", "messaging", "media",
                  "billing", "catalog", "ingest", "reports", "gateway", "checkout", "inventory")
_APPS = ("frontend", "api", "worker", "cache", "auth", "search", "checkout", "notifier",
         "scheduler", "gateway", "ingest", "reports", "billing", "profile", "recommender")
_SIDECAR = {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.21.2"}


def _hash(*parts: object) -> int:
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _suffix(length: int, *parts: object) -> str:
    value = _hash(*parts)
    chars = []
    for _ in range(length):
        value, index = divmod(value, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return "".join(chars)


def go_time(*parts: object) -> str:
    """A deterministic creation time within 2024, as Go's `time.Time` marshals to JSON."""
    value = _hash("age", *parts)
    moment = _EPOCH + timedelta(seconds=value % (300 * 86400))
    minutes, suffix = _OFFSETS[(value >> 32) % len(_OFFSETS)]
    local = moment + timedelta(minutes=minutes)
    fraction = _FRACTIONS[(value >> 40) % len(_FRACTIONS)]
    return local.strftime("%Y-%m-%dT%H:%M:%S") + fraction + suffix


def is_dns_label(name: str) -> bool:
    """True for a DNS-1123 label (what Kubernetes allows as a namespace name)."""
    return bool(_DNS_LABEL.match(name))


@dataclass(frozen=True)
class NamespacePlan:
    """One namespace of the cluster: its name, what seeds its content, how many pods."""

    name: str
    kind: str          # system | team | default | apps
    pods: int
    seed: str          # the agent id for the team namespace, else the name


@dataclass(frozen=True)
class Layout:
    """Where a cluster of `pods` pods puts them; sorted by namespace name, as the API lists."""

    pods: int
    nodes: Tuple[str, ...]
    control_planes: int
    namespaces: Tuple[NamespacePlan, ...]
    listed: Tuple[str, ...]   # every namespace name, empty ones included, sorted

    def plan(self, name: str) -> Optional[NamespacePlan]:
        for plan in self.namespaces:
            if plan.name == name:
                return plan
        return None


def team_namespace(agent_id: str) -> str:
    """The agent's own namespace; `default` holds its pods when the name is no DNS label."""
    return f"team-{agent_id}"


def layout(agent_id: str, pods: int) -> Layout:
    """Split `pods` pods over nodes and namespaces (see the module docstring)."""
    node_count = min(MAX_NODES, max(3, math.ceil(pods / PODS_PER_NODE)))
    control_planes = 3 if node_count >= 30 else 1
    nodes = tuple([f"cp-{i}" for i in range(1, control_planes + 1)]
                  + [f"worker-{'abc'[i % 3]}-{i + 1:03d}"
                     for i in range(node_count - control_planes)])
    # coredns x 2, metrics-server, four static pods per control plane, kube-proxy per node
    system = min(pods, 3 + 4 * control_planes + node_count)
    rest = pods - system
    team = min(rest, TEAM_PODS)
    default = min(rest - team, DEFAULT_PODS)
    remaining = rest - team - default
    plans = [NamespacePlan("kube-system", "system", system, "kube-system")]
    team_name = team_namespace(agent_id)
    if is_dns_label(team_name):
        plans.append(NamespacePlan(team_name, "team", team, agent_id))
    else:
        default += team
    plans.append(NamespacePlan("default", "default", default, "default"))
    count = math.ceil(remaining / PODS_PER_APP_NAMESPACE) if remaining else 0
    for index in range(count):
        share = remaining // count + (1 if index < remaining % count else 0)
        base = APP_NAMESPACES[index % len(APP_NAMESPACES)]
        name = base if index < len(APP_NAMESPACES) else f"{base}-{index // len(APP_NAMESPACES) + 1}"
        plans.append(NamespacePlan(name, "apps", share, name))
    listed = sorted(set(SYSTEM_NAMESPACES) | {team_name} | {p.name for p in plans})
    return Layout(pods, nodes, control_planes,
                  tuple(sorted(plans, key=lambda p: p.name)), tuple(listed))


@dataclass
class Workloads:
    """One namespace's pods, deployments and services, as the agent reports them."""

    pods: List[Dict[str, Any]] = field(default_factory=list)
    deployments: List[Dict[str, Any]] = field(default_factory=list)
    services: List[Dict[str, Any]] = field(default_factory=list)


class _Builder:
    """Fills one namespace's `Workloads` in the order the API server would list them."""

    def __init__(self, plan: NamespacePlan, lay: Layout) -> None:
        self.plan = plan
        self.workers = lay.nodes[lay.control_planes:]
        self.control_planes = lay.nodes[:lay.control_planes]
        self.out = Workloads()

    def pod(self, name: str, containers: List[Dict[str, str]], node: Optional[str] = None,
            phase: Optional[str] = None) -> str:
        plan = self.plan
        value = _hash("pod", plan.seed, name)
        if phase is None:
            bucket = value % 100
            phase = "Pending" if bucket < 3 else "Failed" if bucket < 4 else "Running"
        if node is None:
            node = "" if phase == "Pending" else self.workers[(value >> 8) % len(self.workers)]
        restarts = 0 if (value >> 16) % 10 < 7 else (value >> 20) % 6
        if (value >> 24) % 97 == 0:
            restarts = 37 + (value >> 28) % 200
        ready = phase == "Running" and restarts < 30
        self.out.pods.append({
            "name": name, "namespace": plan.name, "status": phase, "node": node,
            "restarts": restarts, "age": go_time(plan.seed, name),
            "containers": [dict(c, ready=ready) for c in containers],
        })
        return phase

    def deployment(self, app: str, replicas: int, containers: List[Dict[str, str]]) -> None:
        plan = self.plan
        template = _suffix(10, "rs", plan.seed, app)
        running = 0
        for index in range(replicas):
            name = f"{app}-{template}-{_suffix(5, 'pod', plan.seed, app, index)}"
            running += self.pod(name, containers) == "Running"
        self.out.deployments.append({
            "name": app, "namespace": plan.name, "replicas": replicas, "ready": running,
            "available": running, "updated": replicas, "age": go_time(plan.seed, "deploy", app),
            "containers": [c["name"] for c in containers],
        })

    def service(self, name: str, ports: List[Tuple[str, int, int, str]],
                selector: Optional[Dict[str, str]], kind: str = "ClusterIP",
                cluster_ip: Optional[str] = None,
                external: Optional[List[Dict[str, str]]] = None) -> None:
        value = _hash("svc", self.plan.seed, name)
        self.out.services.append({
            "name": name, "namespace": self.plan.name, "type": kind,
            "cluster_ip": cluster_ip or f"192.0.2.{value % 250 + 2}",  # documentation range
            "external_ip": external,
            "ports": [{"name": n, "port": p, "target_port": t, "protocol": proto}
                      for n, p, t, proto in ports],
            "age": go_time(self.plan.seed, "svc", name), "selector": selector,
        })


def _app_containers(plan: NamespacePlan, app: str) -> List[Dict[str, str]]:
    version = _hash("version", plan.seed, app)
    image = f"ghcr.io/kubesage-demo/{app}:1.{version % 9}.{(version >> 8) % 13}"
    main = {"name": app, "image": image}
    return [main, dict(_SIDECAR)] if (version >> 16) % 3 == 0 else [main]


def _system(builder: _Builder, lay: Layout) -> None:
    budget = builder.plan.pods
    dns = [{"name": "coredns", "image": "registry.k8s.io/coredns/coredns:v1.11.1"}]
    metrics = [{"name": "metrics-server",
                "image": "registry.k8s.io/metrics-server/metrics-server:v0.7.1"}]
    pods: List[Tuple[str, List[Dict[str, str]], str]] = []
    for cp in builder.control_planes:
        for component, tag in (("etcd", "3.5.12-0"), ("kube-apiserver", KUBERNETES_VERSION),
                               ("kube-controller-manager", KUBERNETES_VERSION),
                               ("kube-scheduler", KUBERNETES_VERSION)):
            image = f"registry.k8s.io/{component}:{tag}"
            pods.append((f"{component}-{cp}", [{"name": component, "image": image}], cp))
    proxy = [{"name": "kube-proxy", "image": f"registry.k8s.io/kube-proxy:{KUBERNETES_VERSION}"}]
    for node in lay.nodes:
        pods.append((f"kube-proxy-{_suffix(5, 'proxy', node)}", proxy, node))
    coredns = min(2, budget)
    server = min(1, budget - coredns)
    statics = budget - coredns - server
    if coredns:
        builder.deployment("coredns", coredns, dns)
        builder.service("kube-dns", [("dns", 53, 53, "UDP"), ("dns-tcp", 53, 53, "TCP"),
                                     ("metrics", 9153, 9153, "TCP")],
                        {"k8s-app": "kube-dns"}, cluster_ip="192.0.2.10")
    if server:
        builder.deployment("metrics-server", server, metrics)
        builder.service("metrics-server", [("https", 443, 10250, "TCP")],
                        {"k8s-app": "metrics-server"})
    for name, containers, node in pods[:statics]:
        builder.pod(name, containers, node=node, phase="Running")


def _apps(builder: _Builder) -> None:
    plan = builder.plan
    budget = plan.pods
    if plan.kind == "default":
        builder.service("kubernetes", [("https", 443, 6443, "TCP")], None,
                        cluster_ip="192.0.2.1")
        if budget:
            builder.deployment("hello", budget, [{"name": "hello",
                                                  "image": "docker.io/library/nginx:1.25.4"}])
            builder.service("hello", [("http", 80, 80, "TCP")], {"app": "hello"})
        return
    if budget >= 6:   # a StatefulSet and a finished job, no deployment behind them
        redis = [{"name": "redis", "image": "docker.io/library/redis:7.2.4"}]
        for index in range(2):
            builder.pod(f"redis-{index}", redis)
        builder.service("redis", [("redis", 6379, 6379, "TCP")], {"app": "redis"},
                        cluster_ip="None")
        job = _hash("job", plan.seed) % 90_000_000 + 28_000_000
        builder.pod(f"nightly-report-{job}-{_suffix(5, 'job', plan.seed)}",
                    [{"name": "report", "image": "ghcr.io/kubesage-demo/report:2.0.1"}],
                    phase="Succeeded")
        budget -= 3
    index = 0
    while budget > 0:
        base = _APPS[index % len(_APPS)]
        app = base if index < len(_APPS) else f"{base}-{index // len(_APPS) + 1}"
        replicas = min(budget, 1 + _hash("replicas", plan.seed, app) % 6)
        builder.deployment(app, replicas, _app_containers(plan, app))
        budget -= replicas
        if base == "worker":
            pass   # workers take jobs from a queue: no service
        elif index == 0:
            value = _hash("lb", plan.seed)
            external = [{"ip": f"203.0.113.{value % 200 + 10}"}] if value % 2 \
                else [{"hostname": f"a{value % 10**12:012d}.elb.example.com"}]
            builder.service(app, [("http", 80, 8080, "TCP"), ("https", 443, 8443, "TCP")],
                            {"app": app}, kind="LoadBalancer", external=external)
        elif index % 7 == 3:
            builder.service(app, [("http", 80, 8080, "TCP")], {"app": app}, kind="NodePort")
        else:
            builder.service(app, [("http", 80, 8080, "TCP")], {"app": app})
        index += 1


def workloads(plan: NamespacePlan, lay: Layout) -> Workloads:
    """The pods, deployments and services of one namespace of the cluster."""
    builder = _Builder(plan, lay)
    if plan.kind == "system":
        _system(builder, lay)
    else:
        _apps(builder)
    out = builder.out
    for items in (out.pods, out.deployments, out.services):
        items.sort(key=lambda item: str(item["name"]))
    return out


def nodes(lay: Layout) -> List[Dict[str, Any]]:
    """The cluster's nodes: control planes, then workers (some NotReady, some without roles)."""
    items = []
    for index, name in enumerate(lay.nodes):
        control = index < lay.control_planes
        roles: Optional[List[str]] = ["control-plane"] if control else ["worker"]
        if not control and index % 7 == 6:
            roles = None   # no node-role label: the agent's list stays nil
        items.append({
            "name": name,
            "status": "NotReady" if not control and index % 25 == 24 else "Ready",
            "roles": roles, "age": go_time("node", name), "version": KUBERNETES_VERSION,
            "internal_ip": f"198.18.{index // 250}.{index % 250 + 4}",
            "external_ip": f"198.51.100.{index + 10}" if control else "",
            "os": "Ubuntu 22.04.4 LTS", "kernel": "5.15.0-105-generic",
            "container_runtime": "containerd://1.7.13",
        })
    return items


def namespace_items(lay: Layout) -> List[Dict[str, Any]]:
    """get-namespaces items for the cluster's extra (application) namespaces."""
    return [{
        "name": plan.name, "status": "Active", "createdAt": "2024-02-01T08:00:00Z",
        "labels": {"kubernetes.io/metadata.name": plan.name, "team": plan.name},
        "annotations": {},
    } for plan in lay.namespaces if plan.kind == "apps"]


_LOG_PATHS = ("/api/v1/orders", "/api/v1/items?page=3", "/healthz", "/api/v1/cart",
              "/metrics", "/api/v1/users/me", "/static/app.js", "/api/v1/search?q=boots")
_LOG_STATUS = (200, 200, 200, 200, 201, 204, 304, 404, 200, 500)


def log_lines(pod: Dict[str, Any], container: str, count: int) -> str:
    """The last `count` lines of a container's log: access lines, JSON lines or worker lines."""
    name = pod["name"]
    value = _hash("logs", pod["namespace"], name, container)
    start = _EPOCH + timedelta(seconds=value % (300 * 86400) + 86400)
    style = value % 3
    lines = []
    for line in range(count):
        moment = start + timedelta(milliseconds=line * 1373)
        mix = (value >> 8) + line * 2654435761
        path = _LOG_PATHS[mix % len(_LOG_PATHS)]
        status = _LOG_STATUS[(mix >> 5) % len(_LOG_STATUS)]
        if style == 0:
            lines.append(f'203.0.113.{(mix >> 7) % 250} - - '
                         f'[{moment.strftime("%d/%b/%Y:%H:%M:%S")} +0000] "GET {path} HTTP/1.1" '
                         f'{status} {(mix >> 9) % 20000} "-" "kube-probe/1.29"')
        elif style == 1:
            level = "error" if status >= 500 else "info"
            stamp = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
            lines.append(f'{{"level":"{level}","ts":"{stamp}",'
                         f'"msg":"request handled","path":"{path}","status":{status},'
                         f'"duration_ms":{(mix >> 11) % 900}}}')
        else:
            level = "WARNING" if status == 404 else "ERROR" if status >= 500 else "INFO"
            lines.append(f'{moment.strftime("%Y-%m-%d %H:%M:%S")},{line % 1000:03d} {level} '
                         f'{container}.tasks: processed job {mix % 1000000} in '
                         f'{(mix >> 13) % 5000 / 1000:.3f}s')
    return "\n".join(lines) + ("\n" if lines else "")
