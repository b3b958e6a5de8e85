"""marshmallow schemas: query input, response bodies, and the error envelope.

They hold no I/O. The same schemas generate the OpenAPI document, so what is
documented is what is validated and dumped.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from ..errors import InvalidRequest

AGENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
_AGENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_DIGITS = re.compile(r"^[0-9]{1,19}\Z")  # \Z: "$" would also accept a trailing newline
CLUSTER_ID_MAX = 2 ** 63 - 1


def _valid_agent_id(value: str) -> None:
    # fullmatch, not Regexp's match with "$": "$" also accepts a trailing newline.
    if not _AGENT_ID.fullmatch(value):
        raise ValidationError("must be 1-128 characters of letters, digits, '.', '_', ':' or '-'")


class ClusterId(fields.Integer):
    """A non-negative 64-bit integer written in plain decimal digits (no sign, ``_`` or space)."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> int:
        if not isinstance(value, str) or not _DIGITS.match(value) or int(value) > CLUSTER_ID_MAX:
            raise ValidationError("must be an integer between 0 and 2^63-1")
        return int(value)


class ClusterQuery(Schema):
    """The query every cluster call takes: which agent, and the cluster id it echoes."""

    class Meta:
        unknown = EXCLUDE

    agent_id = fields.String(
        required=True, validate=_valid_agent_id,
        metadata={"description": "The Kubernetes agent to ask", "example": "demo-agent-1",
                  "pattern": AGENT_ID_PATTERN})
    cluster_id = ClusterId(
        load_default=None,
        metadata={"description": "Cluster id, echoed back (0 <= id < 2^63)", "example": 123})


class NamespaceSchema(Schema):
    name = fields.String(required=True)
    status = fields.String(required=True)
    created_at = fields.String(allow_none=True, required=True)
    labels = fields.Dict(keys=fields.String(), required=True)
    annotations = fields.Dict(keys=fields.String(), required=True)


class ConnectedAgentsResponse(Schema):
    success = fields.Boolean(required=True)
    connected_agents = fields.List(fields.String(), required=True)
    total_count = fields.Integer(required=True)
    timestamp = fields.String(required=True)


class HealthResponse(Schema):
    status = fields.String(required=True, metadata={"example": "healthy"})
    service = fields.String(required=True, metadata={"example": "cluster_service"})
    timestamp = fields.String(required=True)
    version = fields.String(required=True, metadata={"example": "1.0.0"})


class ReadyResponse(Schema):
    status = fields.String(required=True, validate=validate.OneOf(["ready", "not_ready"]))
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)
    timestamp = fields.String(required=True)


class ErrorResponse(Schema):
    success = fields.Boolean(required=True, metadata={"example": False})
    error = fields.String(required=True, metadata={"example": "agent_timeout"})
    message = fields.String(required=True)
    request_id = fields.String(required=True)
    timestamp = fields.String(required=True)


def load_query(schema: Schema, args: Mapping[str, Any]) -> Any:
    """Validate a query string; a repeated or invalid field is InvalidRequest naming it."""
    getlist = getattr(args, "getlist", None)
    if getlist is not None:
        for field in schema.fields.values():
            name = field.data_key or field.name
            if name is not None and len(getlist(name)) > 1:
                raise InvalidRequest(f"{name}: must be given once")
    try:
        return schema.load(dict(args))
    except ValidationError as error:
        messages = error.messages if isinstance(error.messages, dict) else {"_": error.messages}
        name, problems = sorted(messages.items())[0]
        problem = problems[0] if isinstance(problems, list) and problems else problems
        if problem == "Missing data for required field.":
            problem = "is required"
        raise InvalidRequest(f"{name}: {problem}") from None
