"""The cluster operations: ``/namespaces``, ``/pods``, ``/deployments``, ``/services``,
``/nodes``, ``/summary`` and ``/pods/<pod>/logs``.

Every route is one row of :data:`ROUTES`: the operation it runs
(``domain/operations.py``), the schema its query is checked with and the schema
its body is dumped with. One view function serves them all: authenticate (and
rate limit), check the query, run the operation through the shared machinery
(``ClusterOperations.run``), select and page a list, dump the body.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from flask import Blueprint, Response, g, request
from marshmallow import Schema, ValidationError

from ..domain import operations as ops
from ..domain.listing import Selection
from ..domain.operations import Operation
from ..errors import InvalidRequest
from ..observability.timestamps import utc_timestamp
from .auth import require_user
from .extension import services
from .json_provider import body as json_body
from .operation_schemas import (DeploymentsResponse, ListQuery, NamespacedListQuery,
                                NamespacesQuery, NamespacesResponse, NodesResponse,
                                PodLogsQuery, PodLogsResponse, PodsQuery, PodsResponse,
                                ServicesResponse, SummaryResponse, valid_dns_subdomain)
from .schemas import ClusterQuery, load_query

bp = Blueprint("operations", __name__)

TEXT_PLAIN = "text/plain"
JSON = "application/json"


@dataclass(frozen=True)
class Route:
    """One endpoint: its path, operation, query and body schemas, and extra body fields."""

    path: str
    op: Operation
    query: Schema
    response: Schema
    summary: str
    # The body fields beyond the common ones, from the checked query.
    extra: Callable[[Mapping[str, Any]], dict[str, Any]] = lambda query: {}


def _namespace(query: Mapping[str, Any]) -> dict[str, Any]:
    return {"namespace": query["namespace"]}


ROUTES: tuple[Route, ...] = (
    Route("/namespaces", ops.NAMESPACES, NamespacesQuery(), NamespacesResponse(),
          "list_namespaces: the namespaces of one agent's cluster",
          lambda query: {"message": "Successfully retrieved namespaces from cluster"}),
    Route("/pods", ops.PODS, PodsQuery(), PodsResponse(),
          "list_pods: the pods of one namespace, or of all", _namespace),
    Route("/deployments", ops.DEPLOYMENTS, NamespacedListQuery(), DeploymentsResponse(),
          "list_deployments: the deployments of one namespace, or of all", _namespace),
    Route("/services", ops.SERVICES, NamespacedListQuery(), ServicesResponse(),
          "list_services: the services of one namespace, or of all", _namespace),
    Route("/nodes", ops.NODES, ListQuery(), NodesResponse(),
          "list_nodes: the cluster's nodes"),
    Route("/summary", ops.SUMMARY, ClusterQuery(), SummaryResponse(),
          "cluster_summary: counts of nodes, namespaces, pods, deployments, services"),
    Route("/pods/<pod>/logs", ops.POD_LOGS, PodLogsQuery(), PodLogsResponse(),
          "pod_logs: the last lines of a pod's log (JSON, or text with Accept: text/plain)"),
)


def _agent_params(route: Route, query: Mapping[str, Any], pod: str | None) -> dict[str, Any]:
    """The operation's parameters in the agent's own names (contract §2)."""
    if route.op is ops.POD_LOGS:
        return {"namespace": query["namespace"], "pod_name": pod,
                "container_name": query["container"] or "", "tail_lines": query["tail_lines"]}
    if "namespace" in route.query.fields:
        return {"namespace": query["namespace"] or ""}
    return {}


def _serve(route: Route, pod: str | None = None) -> Response:
    if pod is not None:
        try:
            valid_dns_subdomain(pod)
        except ValidationError as error:
            raise InvalidRequest(f"pod: {error.messages[0]}") from None
    query = load_query(route.query, request.args)
    agent_id, cluster_id = query["agent_id"], query["cluster_id"]
    params = _agent_params(route, query, pod)
    selection = None
    if route.op.is_list:
        selection = Selection.parse(
            route.op, field_selector=query["field_selector"],
            label_selector=query["label_selector"], limit=query["limit"],
            token=query["continue_"], query=(agent_id, cluster_id, params))
    found = services()
    shared = found.clusters.run_shared(route.op, g.user, agent_id, cluster_id, params)
    if route.op is ops.POD_LOGS and _wants_text():
        return Response(shared.value["logs"], mimetype=TEXT_PLAIN)
    # Requests that shared the flight (same user, agent, cluster and parameters) and
    # ask the same query get the same body: dumped and serialised once, by whichever
    # of them comes first.
    body = shared.derive((route.path, request.query_string), lambda result: _body(
        route, query, pod, selection, result, found.settings.continue_token_ttl))
    return Response(body, mimetype=JSON)


def _body(route: Route, query: Mapping[str, Any], pod: str | None,
          selection: Selection | None, result: Any, token_ttl: float) -> bytes:
    """The JSON body of ``route`` for ``result``: dumped with its schema, serialised."""
    body: dict[str, Any] = {"success": True, "agent_id": query["agent_id"],
                            "cluster_id": query["cluster_id"],
                            **route.extra(query)}  # nosec B610
    if selection is not None:
        page = selection.apply(result, time.time(), token_ttl)
        body[route.op.name] = page.items
        body["total_count"] = len(page.items)
        if selection.paged:
            body["continue_"] = page.next_token
    elif route.op is ops.POD_LOGS:
        body.update(namespace=query["namespace"], pod=pod, container=query["container"],
                    tail_lines=query["tail_lines"], logs=result["logs"])
    else:
        body.update(result)
    body["timestamp"] = utc_timestamp()
    return json_body(route.response.dump(body))


def _wants_text() -> bool:
    """Whether the client prefers the log as text (``Accept: text/plain``) over JSON."""
    accept = request.accept_mimetypes
    return accept.quality(TEXT_PLAIN) > accept.quality("application/json")


def _register(route: Route) -> None:
    endpoint = route.summary.split(":")[0]

    @require_user
    def view(**kwargs: Any) -> Response:
        return _serve(route, **kwargs)

    view.__name__ = endpoint
    bp.add_url_rule(route.path, endpoint, view, methods=["GET"])


for _route in ROUTES:
    _register(_route)
