"""Strict JSON for message bodies: what a peer sends is parsed here and nowhere else."""

from __future__ import annotations

import json
from typing import Any

from ..errors import RemoteError


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every body: ``json.loads`` with a hook builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def loads_strict(text: str | bytes) -> Any:
    """``json.loads`` that refuses NaN/Infinity (they would make our own bodies invalid JSON)
    and turns a too-deeply nested document (RecursionError) into ValueError."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    elif isinstance(text, str) and text.startswith("\ufeff"):
        raise ValueError("JSON must not start with a byte order mark")
    try:
        return _DECODER.decode(text)
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
