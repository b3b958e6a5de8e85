"""The cluster operations the agent answers, one row each.

A row names the agent's command, how its ``result`` is parsed
(``agent_results.py``), and what its list offers to selectors. Everything else an
operation goes through (auth, rate limit, single flight, breaker, admission,
timeouts, error mapping, metrics, access line) is shared, in
``clusters.ClusterOperations.run`` and the API layer. Adding an operation is a
row here, its schemas in ``api/operation_schemas.py`` and a route in
``api/operations.py``.

``get-namespaces`` keeps its own queue and request body (the Onboarding
Services in the field consume exactly that); every other command goes to the
operations queue with the agent's own parameter names in ``params``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from . import agent_results
from .agent_results import Parser

# fieldSelector fields every list offers, and the item key each reads (contract §1).
_METADATA = {"metadata.name": "name", "metadata.namespace": "namespace"}


@dataclass(frozen=True)
class Operation:
    """One read operation of the agent."""

    name: str             # the metric label, and the HTTP body's key for a list
    command: str          # the agent's command
    parse: Parser         # result object -> the API's items (a list) or body fields
    # fieldSelector fields -> item keys; empty for an operation that is not a list.
    fields: Mapping[str, str] = field(default_factory=dict)
    labels: bool = False  # whether labelSelector applies (items carry labels)
    own_queue: bool = False  # get-namespaces: its own queue and request body

    @property
    def is_list(self) -> bool:
        return bool(self.fields)


NAMESPACES = Operation("namespaces", "get-namespaces", agent_results.namespaces,
                       fields=_METADATA, labels=True, own_queue=True)
PODS = Operation("pods", "get-pods", agent_results.pods,
                 fields={**_METADATA, "status.phase": "status", "spec.nodeName": "node"})
DEPLOYMENTS = Operation("deployments", "get-deployments", agent_results.deployments,
                        fields=_METADATA)
SERVICES = Operation("services", "get-services", agent_results.services, fields=_METADATA)
NODES = Operation("nodes", "get-nodes", agent_results.nodes, fields=_METADATA)
SUMMARY = Operation("summary", "get-cluster-resources", agent_results.summary)
POD_LOGS = Operation("pod_logs", "get-pod-logs", agent_results.pod_logs)

OPERATIONS: Mapping[str, Operation] = MappingProxyType({
    op.name: op for op in (NAMESPACES, PODS, DEPLOYMENTS, SERVICES, NODES, SUMMARY, POD_LOGS)})


def request_body(op: Operation, agent_id: str, cluster_id: int | None,
                 params: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
    """The message body for ``op`` (``request_id`` and ``timestamp`` are added by the RPC)."""
    if op.own_queue:
        return {"command": op.command, "agent_id": agent_id, "cluster_id": cluster_id,
                "cluster_config": {"cluster_id": cluster_id, "include_details": True},
                "user": dict(user)}
    return {"command": op.command, "agent_id": agent_id, "cluster_id": cluster_id,
            "params": dict(params), "user": dict(user)}
