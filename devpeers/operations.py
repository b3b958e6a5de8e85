"""Cluster-operation results (get-pods, ..., get-pod-logs) served from cached JSON bytes.

The stand-in peers share two cores with the service in benchmarks, so a 5 MB
get-pods answer must cost them little: each namespace's items are built and
serialized once (`Chunk`, kept in a byte-bounded LRU), and a `result` is the
concatenation of cached chunks with a few literal bytes around them. Only a
`churn` agent's list is rejoined item by item (one pod leaves, one arrives on
every request), and a pod's log text is cached per (pod, container, tail_lines).

Results are the Go agent's shapes (contract §2); a namespace without items
gives `null`, as the agent's nil slice does; a failure is the agent's plain
text, returned as a JSON string. Not thread-safe: the one peer thread calls it.
"""

from __future__ import annotations

import itertools
import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import cluster
from .agent_ids import AgentTraits

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
MAX_TAIL_LINES = 10_000
DEFAULT_TAIL_LINES = 100
COMMANDS = ("get-pods", "get-deployments", "get-services", "get-nodes",
            "get-cluster-resources", "get-pod-logs")
# command -> (the list's key, the resource in a failure text, the failing action)
NOUNS = {"get-pods": ("pods", "pods"), "get-deployments": ("deployments", "deployments"),
         "get-services": ("services", "services"), "get-nodes": ("nodes", "nodes"),
         "get-cluster-resources": ("cluster_summary", "nodes"),
         "get-pod-logs": ("logs", "pods/log"), "get-namespaces": ("namespaces", "namespaces")}
_SERVICE_ACCOUNT = "system:serviceaccount:kubesage:kubesage-agent"


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def forbidden_text(command: str, params: Mapping[str, Any]) -> str:
    """The agent's plain-text failure when its service account lacks the permission."""
    if command == "get-pod-logs":
        return (f'Failed to get logs: pods "{params.get("pod_name", "")}" is forbidden: User '
                f'"{_SERVICE_ACCOUNT}" cannot get resource "pods/log" in API group "" in the '
                f'namespace "{params.get("namespace", "")}"')
    resource = NOUNS.get(command, ("", "pods"))[1]
    group = "apps" if resource == "deployments" else ""
    return (f'Failed to list {resource}: {resource} is forbidden: User "{_SERVICE_ACCOUNT}" '
            f'cannot list resource "{resource}" in API group "{group}" at the cluster scope')


@dataclass
class Chunk:
    """One namespace's (or the node list's) items: each serialized, and all joined by commas."""

    items: Tuple[bytes, ...]
    joined: bytes
    names: Dict[str, int] = field(default_factory=dict)
    phases: Dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, items: List[Dict[str, Any]], index: bool = False) -> "Chunk":
        encoded = tuple(_dump(item) for item in items)
        chunk = cls(encoded, b",".join(encoded))
        if index:
            chunk.names = {str(item["name"]): n for n, item in enumerate(items)}
            for item in items:
                chunk.phases[item["status"]] = chunk.phases.get(item["status"], 0) + 1
        return chunk

    @property
    def size(self) -> int:
        return 2 * len(self.joined) + 120 * len(self.items)


class ByteCache:
    """A least-recently-used map whose values' sizes add up to at most `budget` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._entries: "OrderedDict[Tuple[Any, ...], Tuple[Any, int]]" = OrderedDict()

    def get(self, key: Tuple[Any, ...]) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Tuple[Any, ...], value: Any, size: int) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.used -= old[1]
        self._entries[key] = (value, size)
        self.used += size
        while self.used > self.budget and len(self._entries) > 1:
            _key, (_value, freed) = self._entries.popitem(last=False)
            self.used -= freed


class ClusterStore:
    """Every agent's fake cluster, as cached bytes; `result` answers one operation."""

    def __init__(self, default_pods: int, cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.default_pods = default_pods
        self._cache = ByteCache(cache_bytes)
        self._layouts: "OrderedDict[Tuple[str, int], cluster.Layout]" = OrderedDict()
        self._generations: Dict[str, int] = {}

    # ----- the cluster's parts ------------------------------------------------------------

    def layout(self, agent_id: str, traits: AgentTraits) -> cluster.Layout:
        """The agent's layout (remembered for the 4,096 most recent agents)."""
        key = (agent_id, traits.pods or self.default_pods)
        found = self._layouts.get(key)
        if found is None:
            found = self._layouts[key] = cluster.layout(*key)
            if len(self._layouts) > 4096:
                self._layouts.popitem(last=False)
        else:
            self._layouts.move_to_end(key)
        return found

    def _workload_chunks(self, plan: cluster.NamespacePlan,
                         lay: cluster.Layout) -> Tuple[Chunk, Chunk, Chunk]:
        key = ("workloads", plan, len(lay.nodes))
        found: Optional[Tuple[Chunk, Chunk, Chunk]] = self._cache.get(key)
        if found is None:
            built = cluster.workloads(plan, lay)
            found = (Chunk.of(built.pods, index=True), Chunk.of(built.deployments),
                     Chunk.of(built.services))
            self._cache.put(key, found, sum(c.size for c in found))
        return found

    def _node_chunk(self, lay: cluster.Layout) -> Chunk:
        key = ("nodes", lay.nodes)
        found: Optional[Chunk] = self._cache.get(key)
        if found is None:
            found = Chunk.of(cluster.nodes(lay))
            self._cache.put(key, found, found.size)
        return found

    def generation(self, agent_id: str) -> int:
        """A `churn` agent's list version: one more on every list request."""
        value = self._generations.get(agent_id, 0) + 1
        self._generations[agent_id] = value
        if len(self._generations) > 10_000:
            self._generations.pop(next(iter(self._generations)))
        return value

    def extra_namespaces(self, agent_id: str, traits: AgentTraits) -> List[Dict[str, Any]]:
        """get-namespaces items beyond the five every simulated cluster has."""
        items = cluster.namespace_items(self.layout(agent_id, traits))
        if traits.churn:
            name = f"churn-{self.generation(agent_id)}"
            items.append({"name": name, "status": "Active", "createdAt": "2024-03-01T00:00:00Z",
                          "labels": {"kubernetes.io/metadata.name": name}, "annotations": {}})
        return items

    # ----- results ------------------------------------------------------------------------

    def result(self, command: str, agent_id: str, traits: AgentTraits,
               params: Mapping[str, Any]) -> bytes:
        """The serialized `result` of one operation (a JSON object, or a JSON string on failure)."""
        namespace = params.get("namespace")
        namespace = namespace if isinstance(namespace, str) else ""
        if command == "get-nodes":
            return self._nodes(agent_id, traits)
        if command == "get-cluster-resources":
            return self._summary(agent_id, traits)
        if command == "get-pod-logs":
            return self._logs(agent_id, traits, namespace, params)
        kind = {"get-pods": 0, "get-deployments": 1, "get-services": 2}[command]
        key = NOUNS[command][0]
        head = b'{"namespace":' + _dump(namespace) + b',"' + key.encode() + b'":'
        if traits.null_lists:
            return head + b'null,"count":0}'
        lay = self.layout(agent_id, traits)
        chunks = [self._workload_chunks(plan, lay)[kind] for plan in lay.namespaces
                  if not namespace or plan.name == namespace]
        chunks = [c for c in chunks if c.items]
        if kind == 0 and traits.churn:
            return head + self._churned(agent_id, lay, namespace, chunks)
        count = sum(len(c.items) for c in chunks)
        if not count:
            return head + b'null,"count":0}'
        body = chunks[0].joined if len(chunks) == 1 else b",".join(c.joined for c in chunks)
        return b"".join((head, b"[", body, b'],"count":', str(count).encode(), b"}"))

    def _churned(self, agent_id: str, lay: cluster.Layout, namespace: str,
                 chunks: List[Chunk]) -> bytes:
        """The pod list with one pod gone and one new pod: different on every request."""
        generation = self.generation(agent_id)
        items = list(itertools.chain.from_iterable(c.items for c in chunks))
        if items:
            del items[generation % len(items)]
        home = namespace or next((p.name for p in lay.namespaces if p.kind == "team"), "default")
        items.append(_dump({
            "name": f"churn-job-{generation}",
            "namespace": home, "status": "Pending", "node": "", "restarts": 0,
            "age": cluster.go_time("churn", agent_id, generation),
            "containers": [{"name": "job", "image": "ghcr.io/kubesage-demo/job:1.0.0",
                            "ready": False}]}))
        return b"".join((b"[", b",".join(items), b'],"count":', str(len(items)).encode(), b"}"))

    def _nodes(self, agent_id: str, traits: AgentTraits) -> bytes:
        if traits.null_lists:
            return b'{"nodes":null,"count":0}'
        chunk = self._node_chunk(self.layout(agent_id, traits))
        return b"".join((b'{"nodes":[', chunk.joined, b'],"count":',
                         str(len(chunk.items)).encode(), b"}"))

    def _summary(self, agent_id: str, traits: AgentTraits) -> bytes:
        if traits.null_lists:
            counts = dict.fromkeys(("nodes", "namespaces", "pods", "deployments", "services"), 0)
            return _dump({"cluster_summary": counts, "nodes_status": {"ready": 0, "not_ready": 0},
                          "pods_status": dict.fromkeys(
                              ("running", "pending", "failed", "succeeded"), 0)})
        lay = self.layout(agent_id, traits)
        key = ("summary", lay.namespaces, lay.nodes, traits.churn)
        found: Optional[bytes] = self._cache.get(key)
        if found is None:
            found = self._build_summary(lay, traits.churn)
            self._cache.put(key, found, len(found))
        return found

    def _build_summary(self, lay: cluster.Layout, churn: bool) -> bytes:
        chunks = [self._workload_chunks(plan, lay) for plan in lay.namespaces]
        phases: Dict[str, int] = {}
        for pods, _deployments, _services in chunks:
            for phase, n in pods.phases.items():
                phases[phase] = phases.get(phase, 0) + n
        node_items = [json.loads(item) for item in self._node_chunk(lay).items]
        ready = sum(1 for node in node_items if node["status"] == "Ready")
        return _dump({
            "cluster_summary": {
                "nodes": len(node_items),
                "namespaces": len(lay.listed) + (1 if churn else 0),
                "pods": sum(len(c[0].items) for c in chunks),
                "deployments": sum(len(c[1].items) for c in chunks),
                "services": sum(len(c[2].items) for c in chunks)},
            "nodes_status": {"ready": ready, "not_ready": len(node_items) - ready},
            "pods_status": {"running": phases.get("Running", 0),
                            "pending": phases.get("Pending", 0),
                            "failed": phases.get("Failed", 0),
                            "succeeded": phases.get("Succeeded", 0)}})

    def _logs(self, agent_id: str, traits: AgentTraits, namespace: str,
              params: Mapping[str, Any]) -> bytes:
        pod_name = params.get("pod_name")
        container = params.get("container_name")
        container = container if isinstance(container, str) else ""
        tail = params.get("tail_lines")
        if isinstance(tail, bool) or not isinstance(tail, int) or tail < 1:
            tail = DEFAULT_TAIL_LINES
        tail = min(tail, MAX_TAIL_LINES)
        if not isinstance(pod_name, str) or not pod_name:
            return _dump("Failed to get logs: resource name may not be empty")
        pod = None if traits.null_lists else self._find_pod(agent_id, traits, namespace, pod_name)
        if pod is None:
            return _dump(f'Failed to get logs: pods "{pod_name}" not found')
        names = [c["name"] for c in pod["containers"]]
        chosen = container or names[0]
        if chosen not in names:
            return _dump(f"Failed to get logs: container {chosen} is not valid for pod {pod_name}")
        if pod["status"] == "Pending":
            return _dump(f'Failed to get logs: container "{chosen}" in pod "{pod_name}" is '
                         f'waiting to start: ContainerCreating')
        key = ("logs", namespace, pod_name, pod["age"], chosen, container, tail)
        found: Optional[bytes] = self._cache.get(key)
        if found is None:
            found = _dump({"namespace": namespace, "pod_name": pod_name,
                           "container_name": container,
                           "logs": cluster.log_lines(pod, chosen, tail), "tail_lines": tail})
            self._cache.put(key, found, len(found))
        return found

    def _find_pod(self, agent_id: str, traits: AgentTraits, namespace: str,
                  pod_name: str) -> Optional[Dict[str, Any]]:
        lay = self.layout(agent_id, traits)
        plan = lay.plan(namespace)
        if plan is None:
            return None
        pods = self._workload_chunks(plan, lay)[0]
        index = pods.names.get(pod_name)
        if index is None:
            return None
        found: Dict[str, Any] = json.loads(pods.items[index])
        return found
