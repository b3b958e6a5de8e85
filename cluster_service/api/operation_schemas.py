"""marshmallow schemas of the cluster operations: their queries and their bodies.

Queries share :class:`ClusterQuery` (``agent_id``, ``cluster_id``) and, for lists,
:class:`ListQuery` (``limit``, ``continue``, ``fieldSelector``, ``labelSelector``).
Item schemas document exactly what ``domain/agent_results.py`` produces; the
list fields dump those items as they are (:class:`CheckedNested`): the parsers
already guarantee every value's type, and converting 20,000 pods field by field
again would cost more than the rest of the request. ``tests`` prove, for
generated agent replies, that a full marshmallow dump gives the same body.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from marshmallow import Schema, ValidationError, fields

from .schemas import ClusterQuery, NamespaceSchema

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
_DNS_LABEL = re.compile(DNS_LABEL[1:-1])
_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN[1:-1])
# Bounds that keep a whole query inside MAX_QUERY_STRING (api/contract.py), so a long
# one gets this API's 400, not the HTTP server's 414.
MAX_SELECTOR = 256
MAX_CONTINUE = 512


def valid_dns_label(value: str) -> None:
    """A DNS-1123 label, as Kubernetes names namespaces and containers."""
    if not _DNS_LABEL.fullmatch(value):
        raise ValidationError("must be a DNS-1123 label: 1-63 of a-z, 0-9 and '-', "
                              "starting and ending with a letter or digit")


def valid_dns_subdomain(value: str) -> None:
    """A DNS-1123 subdomain, as Kubernetes names pods."""
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValidationError("must be a DNS-1123 subdomain: 1-253 of a-z, 0-9, '-' and '.', "
                              "each part starting and ending with a letter or digit")


class QueryInt(fields.Integer):
    """A bounded integer written in plain decimal digits (no sign, exponent or space)."""

    def __init__(self, low: int, high: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.low, self.high = low, high

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> int:
        if not isinstance(value, str) or not value.isascii() or not value.isdigit() \
                or len(value) > 6 or not self.low <= int(value) <= self.high:
            raise ValidationError(f"must be an integer between {self.low} and {self.high}")
        return int(value)


def _selector_field(data_key: str, pattern: str, description: str,
                    example: str) -> fields.String:
    return fields.String(
        data_key=data_key, load_default=None,
        validate=lambda value: len(value) <= MAX_SELECTOR or _refuse(
            f"at most {MAX_SELECTOR} characters"),
        metadata={"description": description, "example": example, "pattern": pattern,
                  "maxLength": MAX_SELECTOR})


def _field_selector(names: tuple[str, ...]) -> fields.String:
    """``fieldSelector`` over ``names``; the pattern documents the grammar the parser reads."""
    field = "(" + "|".join(re.escape(name) for name in names) + ")"
    term = rf"{field}(=|==|!=)([^,=\\]|\\[,=\\])*"
    return _selector_field(
        "fieldSelector", rf"^({term}(,{term})*)?$",
        "Kubernetes field selector: comma-separated `field=value`, `field==value`, "
        f"`field!=value` terms, all of which must hold; fields: {', '.join(names)}",
        f"{names[0]}=example")


_METADATA_FIELDS = ("metadata.name", "metadata.namespace")
_LABEL_VALUE = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = (r"([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*/)?"
              + _LABEL_VALUE)
_REQUIREMENT = (rf"(!?{_LABEL_KEY}|{_LABEL_KEY}(=|==|!=)({_LABEL_VALUE})?"
                rf"|{_LABEL_KEY} (in|notin) \({_LABEL_VALUE}(,{_LABEL_VALUE})*\))")


class ListQuery(ClusterQuery):
    """The list conventions shared by every list (contract §1)."""

    limit = QueryInt(1, 1000, load_default=None, metadata={
        "description": "At most this many items, sorted by (namespace, name), and a "
                       "`continue` token for the next page", "minimum": 1, "maximum": 1000})
    continue_ = fields.String(
        data_key="continue", load_default=None,
        validate=lambda value: 0 < len(value) <= MAX_CONTINUE or _refuse(
            f"1-{MAX_CONTINUE} characters"),
        metadata={"description": "The `continue` token of the previous page (with `limit`)",
                  "minLength": 1, "maxLength": MAX_CONTINUE})
    field_selector = _field_selector(_METADATA_FIELDS)
    # Only namespaces carry labels: on every other list a non-empty labelSelector is a 400.
    label_selector = _selector_field(
        "labelSelector", "^$", "Not supported on this list (its items carry no labels): "
        "anything but the empty selector is refused", "")


class NamespacesQuery(ListQuery):
    label_selector = _selector_field(
        "labelSelector", rf"^({_REQUIREMENT}(,{_REQUIREMENT})*)?$",
        "Kubernetes label selector: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, "
        "`k`, `!k`, comma = AND", "env in (prod,staging)")


def _refuse(message: str) -> bool:
    raise ValidationError(message)


def _namespace_field(required: bool) -> fields.String:
    description = "The namespace" if required else "The namespace (absent: all namespaces)"
    extra: dict[str, Any] = {} if required else {"load_default": None}
    return fields.String(required=required, validate=valid_dns_label, **extra,
                         metadata={"description": description, "pattern": DNS_LABEL,
                                   "maxLength": 63, "example": "default"})


class NamespacedListQuery(ListQuery):
    namespace = _namespace_field(required=False)


class PodsQuery(NamespacedListQuery):
    field_selector = _field_selector(_METADATA_FIELDS + ("status.phase", "spec.nodeName"))


class PodLogsQuery(ClusterQuery):
    namespace = _namespace_field(required=True)
    container = fields.String(load_default=None, validate=valid_dns_label, metadata={
        "description": "The container (absent: the pod's only or default container)",
        "pattern": DNS_LABEL, "maxLength": 63})
    tail_lines = QueryInt(1, 10000, load_default=100, metadata={
        "description": "How many of the last lines", "minimum": 1, "maximum": 10000,
        "default": 100})


class CheckedNested(fields.Nested):
    """A nested list the domain layer built in exactly its schema's shape: dumped as it is."""

    def _serialize(  # type: ignore[override]
            self, nested_obj: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        return nested_obj


class ContainerStatusSchema(Schema):
    name = fields.String(required=True)
    image = fields.String(required=True)
    ready = fields.Boolean(required=True)


class PodSchema(Schema):
    name = fields.String(required=True)
    namespace = fields.String(required=True)
    status = fields.String(required=True, metadata={"example": "Running"})
    node = fields.String(required=True, metadata={"description": "Empty until scheduled"})
    restarts = fields.Integer(required=True)
    created_at = fields.String(required=True, allow_none=True)
    containers = fields.List(fields.Nested(ContainerStatusSchema), required=True)


class DeploymentSchema(Schema):
    name = fields.String(required=True)
    namespace = fields.String(required=True)
    replicas = fields.Integer(required=True, allow_none=True,
                              metadata={"description": "Desired replicas (null: unset)"})
    ready_replicas = fields.Integer(required=True)
    available_replicas = fields.Integer(required=True)
    updated_replicas = fields.Integer(required=True)
    created_at = fields.String(required=True, allow_none=True)
    containers = fields.List(fields.String(), required=True,
                             metadata={"description": "The containers' images"})


class ServicePortSchema(Schema):
    name = fields.String(required=True)
    port = fields.Integer(required=True)
    target_port = fields.String(required=True,
                                metadata={"description": "A port number or a port name"})
    protocol = fields.String(required=True)


class ServiceSchema(Schema):
    name = fields.String(required=True)
    namespace = fields.String(required=True)
    type = fields.String(required=True, metadata={"example": "ClusterIP"})
    cluster_ip = fields.String(required=True)
    external_ips = fields.List(fields.String(), required=True)
    ports = fields.List(fields.Nested(ServicePortSchema), required=True)
    selector = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    created_at = fields.String(required=True, allow_none=True)


class NodeSchema(Schema):
    name = fields.String(required=True)
    status = fields.String(required=True, metadata={"example": "Ready"})
    roles = fields.List(fields.String(), required=True)
    created_at = fields.String(required=True, allow_none=True)
    version = fields.String(required=True)
    internal_ip = fields.String(required=True)
    external_ip = fields.String(required=True)
    os = fields.String(required=True)
    kernel = fields.String(required=True)
    container_runtime = fields.String(required=True)


# Every body's fields in the contract's order: who was asked, what was found, when.

def _head() -> dict[str, fields.Field[Any]]:
    return {"success": fields.Boolean(required=True),
            "agent_id": fields.String(required=True),
            "cluster_id": fields.Integer(allow_none=True, required=True)}


def _namespace_echo() -> dict[str, fields.Field[Any]]:
    return {"namespace": fields.String(required=True, allow_none=True,
                                       metadata={"description": "null: all namespaces"})}


def _list_tail() -> dict[str, fields.Field[Any]]:
    return {"total_count": fields.Integer(required=True, metadata={
                "description": "How many items this body holds (this page's, when paged)"}),
            "continue_": fields.String(data_key="continue", allow_none=True, metadata={
                "description": "Present only with `limit`: the token for the next page, "
                               "null on the last"})}


def _timestamp() -> dict[str, fields.Field[Any]]:
    return {"timestamp": fields.String(required=True)}


def _body(name: str, *parts: dict[str, fields.Field[Any]]) -> type[Schema]:
    """A response schema whose fields come in the order of ``parts``."""
    declared: dict[str, fields.Field[Any]] = {}
    for part in parts:
        declared.update(part)
    return Schema.from_dict(declared, name=name)


def _items(schema: type[Schema], key: str) -> dict[str, fields.Field[Any]]:
    return {key: CheckedNested(schema, many=True, required=True)}


NamespacesResponse = _body(
    "NamespacesResponse", _head(), _items(NamespaceSchema, "namespaces"), _list_tail(),
    {"message": fields.String(required=True)}, _timestamp())
PodsResponse = _body("PodsResponse", _head(), _namespace_echo(), _items(PodSchema, "pods"),
                     _list_tail(), _timestamp())
DeploymentsResponse = _body("DeploymentsResponse", _head(), _namespace_echo(),
                            _items(DeploymentSchema, "deployments"), _list_tail(),
                            _timestamp())
ServicesResponse = _body("ServicesResponse", _head(), _namespace_echo(),
                         _items(ServiceSchema, "services"), _list_tail(), _timestamp())
NodesResponse = _body("NodesResponse", _head(), _items(NodeSchema, "nodes"), _list_tail(),
                      _timestamp())


class _Counts(Schema):
    nodes = fields.Integer(required=True)
    namespaces = fields.Integer(required=True)
    pods = fields.Integer(required=True)
    deployments = fields.Integer(required=True)
    services = fields.Integer(required=True)


class _NodesStatus(Schema):
    ready = fields.Integer(required=True)
    not_ready = fields.Integer(required=True)


class _PodsStatus(Schema):
    running = fields.Integer(required=True)
    pending = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    succeeded = fields.Integer(required=True)


SummaryResponse = _body("SummaryResponse", _head(), {
    "counts": fields.Nested(_Counts, required=True),
    "nodes_status": fields.Nested(_NodesStatus, required=True),
    "pods_status": fields.Nested(_PodsStatus, required=True)}, _timestamp())
PodLogsResponse = _body("PodLogsResponse", _head(), {
    "namespace": fields.String(required=True),
    "pod": fields.String(required=True),
    "container": fields.String(required=True, allow_none=True),
    "tail_lines": fields.Integer(required=True),
    "logs": fields.String(required=True)}, _timestamp())
