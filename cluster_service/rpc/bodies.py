"""Strict JSON for message bodies: what a peer sends is parsed here and nowhere else."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import RemoteError


def loads_strict(text: str | bytes) -> Any:
    """Parse JSON strictly: UTF-8 only, no NaN/Infinity (they would make our own bodies
    invalid JSON), no byte order mark, nesting bounded; anything else is ValueError.

    orjson, not the standard library: a cluster operation's reply can be megabytes,
    and orjson parses it several times faster (docs/performance.md).
    """
    if isinstance(text, str) and text.startswith("\ufeff"):
        raise ValueError("JSON must not start with a byte order mark")
    return orjson.loads(text)  # JSONDecodeError is a ValueError


def call_id_of(body: bytes) -> str | None:
    """The call id a reply names in its body's ``request_id`` (the contract's name for it),
    or None when the body is not a JSON object with one."""
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
