"""Strict JSON for message bodies: what a peer sends is parsed here and nowhere else."""

from __future__ import annotations

import json
from typing import Any

from ..errors import RemoteError


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN/Infinity (they would make our own bodies invalid JSON)
    and turns a too-deeply nested document (RecursionError) into ValueError."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def request_id_of(body: bytes) -> str | None:
    """The body's ``request_id``, or None when the body is not a JSON object with one."""
    try:
        data = loads_strict(body)
    except (ValueError, UnicodeDecodeError):
        return None
    request_id = data.get("request_id") if isinstance(data, dict) else None
    return request_id if isinstance(request_id, str) else None


def parse_reply(body: bytes) -> dict[str, Any]:
    """Decode a reply body; anything but a JSON object is the peer's fault (502)."""
    try:
        data = loads_strict(body)
    except (ValueError, UnicodeDecodeError):
        raise RemoteError("reply is not valid JSON") from None
    if not isinstance(data, dict):
        raise RemoteError("reply is not a JSON object")
    return data
