"""Call ids that name their owner, so a reply can be sent to exactly one queue.

A *call id* identifies one RPC (the wire's ``request_id`` and ``correlation_id``,
as the contract names them); the *request id* is the HTTP request's
(``X-Request-ID``), carried in the message's ``x-request-id`` header.

A legacy peer answers on a fixed results queue that every worker of every
replica consumes; whoever takes the reply must find its owner from the reply
alone, without shared state. So the call id (which the peers echo as an
opaque string) is an RFC 9562 **version-8 UUID** that carries the owning
connection's token, and that connection's exclusive reply queue is named after
the token. Canonical form, hex digits::

    TTTTTTTT-TTTT-85C1-vRRR-RRRRRRRRRRRR

* ``T`` (48 bits, ``custom_a``): the owner's token, random per broker connection.
* ``8``: the version. ``5c1`` (``custom_b``): a marker for this layout, so a v8
  id made by someone else is not mistaken for ours.
* ``v``: the RFC 9562 variant (``10xx``). ``R`` (62 bits, ``custom_c``): random per call.

Two connections drawing the same token cannot both exist: the second one's
exclusive queue declaration fails with RESOURCE_LOCKED and it reconnects with a
new token. Nothing here raises on bad input: a garbage id is just "no owner".
"""

from __future__ import annotations

import re
import secrets

REPLY_QUEUE_PREFIX = "cluster_service.reply."
_MARKER = "5c1"
_VARIANT_BITS = 0b10 << 62
_OURS = re.compile(r"([0-9a-f]{8})-([0-9a-f]{4})-8" + _MARKER
                   + r"-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.IGNORECASE)
_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                    re.IGNORECASE)


def new_token() -> str:
    """A fresh owner token: 12 lowercase hex digits (48 random bits)."""
    return secrets.token_hex(6)


def reply_queue_name(token: str) -> str:
    """The exclusive reply queue of the connection that owns ``token``."""
    return REPLY_QUEUE_PREFIX + token


def new_call_id(token: str) -> str:
    """A version-8 UUID string carrying ``token`` (from :func:`new_token`)."""
    low = _VARIANT_BITS | secrets.randbits(62)
    tail = f"{low:016x}"
    return f"{token[:8]}-{token[8:12]}-8{_MARKER}-{tail[:4]}-{tail[4:]}"


def owner_token(call_id: object) -> str | None:
    """The token of an id made by :func:`new_call_id`, else None (never raises)."""
    if not isinstance(call_id, str) or len(call_id) != 36:
        return None
    match = _OURS.fullmatch(call_id)
    return (match.group(1) + match.group(2)).lower() if match else None


def is_legacy_id(call_id: object) -> bool:
    """Whether ``request_id`` is a version-4 UUID, as earlier versions of the service made.

    Such a reply's owner cannot be named; during a rolling update it is sent to
    the fanout exchange (see ``client.py``).
    """
    return isinstance(call_id, str) and len(call_id) == 36 \
        and _UUID4.fullmatch(call_id) is not None
