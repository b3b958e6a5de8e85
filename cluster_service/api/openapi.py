"""The OpenAPI 3 document, generated from the marshmallow schemas.

The views validate and dump with the schemas in ``schemas.py``; this module
turns the same schemas into the document served at ``/openapi.json``, so what
is documented is what is checked. Paths are absolute (``/api/v3.0/cluster/...``)
and the document has no ``servers`` entry: a client resolves them against the
host it fetched the document from.

Every error status an operation can answer is listed with the one error
envelope (``Error``); ``tests/unit/api/test_openapi.py`` checks real responses against
it and ``tests/integration/test_schemathesis.py`` fuzzes the running service.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from marshmallow import fields

from ..errors import all_errors
from .contract import API_KEY_HEADER, BASE_PATH, HTTP_ERRORS, REQUEST_ID_HEADER, VERSION
from ..domain.operations import POD_LOGS
from .operation_schemas import DNS_SUBDOMAIN
from .operations import ROUTES, TEXT_PLAIN, Route
from .schemas import (CLUSTER_ID_MAX, ClusterId, ConnectedAgentsResponse, ErrorResponse,
                      HealthResponse, ReadyResponse)

SECURITY_SCHEME = "ApiKeyAuth"
ERROR = "Error"

# Every status a cluster call can fail with (contract §1), and what it means. The
# codes come from the domain errors themselves (cluster_service/errors.py).
_MEANINGS = {
    400: "a query parameter (named in `message`) missing or malformed",
    401: "X-API-Key missing, malformed or rejected",
    403: "this user may not use this agent",
    404: "the agent is not connected or unknown",
    410: "the `continue` token cannot be honoured (the list changed, the token expired, "
         "belongs to another query or cannot be read); start the list again",
    414: "the request line is longer than the server reads (4 KB)",
    431: "the request headers are larger than the server reads",
    429: "too many requests or failed logins; see Retry-After",
    500: "unexpected failure (never a stack trace)",
    502: "the peer or agent answered with an error or an invalid reply",
    503: "broker or auth backend unreachable, the agent's breaker "
         "open (its calls timed out), or no slot within the call's timeout",
    504: "no reply within WEBSOCKET_TIMEOUT seconds",
}


def _codes(status: int) -> str:
    codes = dict.fromkeys(kind.error_code for kind in all_errors() if kind.http_status == status)
    if not codes and status in HTTP_ERRORS:
        codes = {HTTP_ERRORS[status][0]: None}
    return " / ".join(f"`{code}`" for code in codes)


_ERRORS = {status: f"{_codes(status)}: {meaning}" for status, meaning in _MEANINGS.items()}
_RETRY_AFTER = {"description": "Seconds to wait before retrying",
                "schema": {"type": "integer", "minimum": 0}}
_REQUEST_ID = {"description": "The client's X-Request-ID if it was sane, else a new uuid4",
               "schema": {"type": "string"}}


def _query_bounds(self: Any, field: fields.Field[Any], ret: dict[str, Any],
                  **kwargs: Any) -> dict[str, Any]:
    """apispec attribute function: query parameters are absent, never null.

    A query parameter cannot be null: absent means null. apispec derives
    ``nullable`` and ``default: null`` from ``load_default=None``; a fuzzer would
    then send an empty value, which the service rightly rejects. ``ClusterId`` is a
    non-negative 64-bit integer.
    """
    if field.load_default is None:
        ret.pop("nullable", None)
        ret.pop("default", None)
    if not isinstance(field, ClusterId):
        return {}
    return {"format": "int64", "minimum": 0, "maximum": CLUSTER_ID_MAX}


def _json(schema: Any, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description,
            "headers": {REQUEST_ID_HEADER: _REQUEST_ID, **(headers or {})},
            "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(ERROR, _ERRORS[status],
                               {"Retry-After": _RETRY_AFTER} if status in (429, 503) else None)
            for status in statuses}


def _operation(summary: str, responses: dict[str, Any], *, secured: bool = False,
               tag: str = "cluster", parameters: list[Any] | None = None) -> dict[str, Any]:
    request_id = {"in": "header", "name": REQUEST_ID_HEADER, "required": False,
                  "description": "Optional id that ties logs and AMQP messages to this request",
                  "schema": {"type": "string"}}
    return {"get": {
        "summary": summary, "tags": [tag], "operationId": summary.split(":")[0],
        "security": [{SECURITY_SCHEME: []}] if secured else [],
        "parameters": [*(parameters or []), request_id],
        "responses": responses}}


def _openapi_path(path: str) -> str:
    """A Flask rule (``/pods/<pod>/logs``) as an OpenAPI path (``/pods/{pod}/logs``)."""
    return path.replace("<", "{").replace(">", "}")


def _operation_of(route: Route) -> dict[str, Any]:
    """The document of one cluster operation's route (``operations.ROUTES``)."""
    statuses = [400, 401, 403, 404, *([410] if route.op.is_list else []), 414, 429, 431, 500,
                502, 503, 504]
    parameters: list[Any] = [{"in": "query", "schema": type(route.query)}]
    if "{pod}" in _openapi_path(route.path):
        parameters.insert(0, {"in": "path", "name": "pod", "required": True,
                              "description": "The pod (a DNS-1123 subdomain)",
                              "schema": {"type": "string", "pattern": DNS_SUBDOMAIN,
                                         "maxLength": 253}})
    schema_name = type(route.response).__name__.removesuffix("Response")
    ok = _json(schema_name, f"{route.summary.split(': ', 1)[1].capitalize()}")
    if route.op is POD_LOGS:
        ok["content"][TEXT_PLAIN + "; charset=utf-8"] = {"schema": {"type": "string"}}
    return _operation(route.summary, {"200": ok, **_errors(*statuses)}, secured=True,
                      parameters=parameters)


def build_spec() -> dict[str, Any]:
    """The whole document as a dict, ready for ``jsonify``."""
    plugin = MarshmallowPlugin()
    spec = APISpec(
        title="KubeSage Cluster Service", version=VERSION, openapi_version="3.0.3",
        plugins=[plugin],
        info={"description": "On-demand Kubernetes cluster operations, relayed over RabbitMQ "
                             "to the KubeSage agents. Every error has the `Error` body."})
    converter = plugin.converter  # created when APISpec initialises its plugins
    if converter is None:
        raise RuntimeError("apispec did not initialise the marshmallow plugin")
    converter.add_attribute_function(_query_bounds)  # type: ignore[no-untyped-call]
    for route in ROUTES:
        spec.components.schema(type(route.response).__name__.removesuffix("Response"),
                               schema=type(route.response))
    spec.components.security_scheme(SECURITY_SCHEME, {
        "type": "apiKey", "in": "header", "name": API_KEY_HEADER})
    for name, schema in (("Health", HealthResponse), ("Ready", ReadyResponse),
                         ("ConnectedAgents", ConnectedAgentsResponse), (ERROR, ErrorResponse)):
        spec.components.schema(name, schema=schema)

    paths: dict[str, dict[str, Any]] = {
        "/health": _operation("health: liveness probe; never touches the broker", {
            "200": _json("Health", "The process is alive")}, tag="probes"),
        "/ready": _operation("ready: readiness probe; this worker's broker connection", {
            "200": _json("Ready", "Ready to serve cluster calls"),
            "503": _json("Ready", "Not ready: `status` is `not_ready`; `checks` names the "
                                  "failing check")}, tag="probes"),
        "/agents/connected": _operation(
            "connected_agents: the agents connected now, sorted, without duplicates",
            {"200": _json("ConnectedAgents", "The connected agents' ids"),
             **_errors(401, 403, 404, 429, 500, 502, 503, 504)}, secured=True),
        "/metrics": _operation("metrics: Prometheus text exposition, all workers aggregated", {
            "200": {"description": "Prometheus text format 0.0.4",
                    "headers": {REQUEST_ID_HEADER: _REQUEST_ID},
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            "404": _json(ERROR, "`not_found`: METRICS_ENABLED is false")}, tag="meta"),
        "/openapi.json": _operation("openapi: this document", {
            "200": _json({"type": "object"}, "The OpenAPI 3 document")}, tag="meta"),
    }
    for route in ROUTES:
        paths[_openapi_path(route.path)] = _operation_of(route)
    for path, operations in paths.items():
        spec.path(path=BASE_PATH + path, operations=operations)
    return spec.to_dict()
