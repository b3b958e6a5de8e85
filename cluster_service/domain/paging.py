"""Paged lists: ``limit`` and ``continue`` as Kubernetes' list calls offer them.

Design: the token carries everything needed to check it, and nothing is kept
on the server. The agent has no paging of its own (it always answers the whole
list), so every page is served from a fresh fetch of the whole list, sorted by
(namespace, name). The token holds

* the *scope*: a digest of the query the list answers (operation, agent,
  cluster, namespace, selectors); a token shown to another query is refused;
* the *fingerprint*: a digest of the keys (namespace, name) of every item of
  the selected list when the first page was served;
* the key of the last item served, and the time the walk started.

The next page, on any worker of any replica, fetches the list again and
compares fingerprints: equal means the same items in the same order, so
the page starts right after the last key and every item is served exactly
once across the pages. A list that gained, lost or renamed an item since, or a
token older than ``CONTINUE_TOKEN_TTL``, is :class:`ContinueExpired` (410):
never a silently different list. Items whose fields changed but whose keys
did not are served as they are now, as a fresh read should.

Why not a snapshot in Redis: it would need a shared store on every deployment
(the fleet Redis is optional), hold megabytes per walk, and still fetch the
list for the first page. The token is not secret and needs no signature:
whoever holds one can only read, with their own key's rights, a list they can
read anyway, and a forged fingerprint can only make a page fail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from bisect import bisect_right
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import ContinueExpired

_VERSION = 1
# A token's issue time may run ahead of this worker's clock by this much (replicas'
# clocks differ a little); further ahead, it was not issued by a replica of ours.
_CLOCK_SKEW_S = 60


@dataclass(frozen=True)
class Page:
    """One page of a list: its items and the token for the next (None on the last)."""

    items: list[Mapping[str, Any]]
    next_token: str | None


def item_key(item: Mapping[str, Any]) -> tuple[str, str]:
    """The sort key of a list item: (namespace, name); items without a namespace sort by name."""
    return (item.get("namespace") or "", item["name"])


def scope_of(*parts: Any) -> str:
    """A short digest of the query a list answers."""
    text = json.dumps(parts, separators=(",", ":"), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=9).hexdigest()


@dataclass(frozen=True)
class Cursor:
    """Where a ``continue`` token says the previous page ended, and what it was of."""

    fingerprint: str
    after: tuple[str, str]
    issued: int


def read_token(token: str, scope: str) -> Cursor:
    """The cursor in ``token``, checked before anything is fetched: ContinueExpired (410)
    if it cannot be read or was issued for another query (the list it continues is not
    this one)."""
    claimed = _decode(token)
    if claimed["scope"] != scope:  # another agent, namespace or selectors: not this list
        raise ContinueExpired()
    return Cursor(claimed["fingerprint"], claimed["after"], claimed["issued"])


def page_of(items: Sequence[Mapping[str, Any]], limit: int, cursor: Cursor | None,
            scope: str, now: float, ttl: float) -> Page:
    """The page of ``items`` (the whole selected list) that starts after ``cursor``."""
    ordered = sorted(items, key=item_key)
    keys = [item_key(item) for item in ordered]
    fingerprint = _fingerprint(keys)
    if cursor is None:
        start, issued = 0, int(now)
    else:
        issued = cursor.issued
        if not (now - ttl <= issued <= now + _CLOCK_SKEW_S) \
                or cursor.fingerprint != fingerprint:
            raise ContinueExpired()
        start = bisect_right(keys, cursor.after)
    end = start + limit
    if end >= len(ordered):
        return Page(ordered[start:], None)
    return Page(ordered[start:end], _encode(scope, fingerprint, keys[end - 1], issued))


def _fingerprint(keys: list[tuple[str, str]]) -> str:
    digest = hashlib.blake2b(digest_size=12)
    for namespace, name in keys:
        digest.update(f"{namespace}\x00{name}\x01".encode())
    return digest.hexdigest()


def _encode(scope: str, fingerprint: str, after: tuple[str, str], issued: int) -> str:
    text = json.dumps([_VERSION, scope, fingerprint, list(after), issued],
                      separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(token: str) -> dict[str, Any]:
    """The token's claims. One that cannot be read was not issued by this version of the
    service (or was mangled): it cannot be honoured, and starting the list again is the
    only way on, so it is ContinueExpired (410) like an old one."""
    unreadable = ContinueExpired()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        version, scope, fingerprint, after, issued = json.loads(raw)
    except (ValueError, TypeError, binascii.Error):
        raise unreadable from None
    if version != _VERSION or not isinstance(scope, str) or not isinstance(fingerprint, str) \
            or not isinstance(after, list) or len(after) != 2 \
            or not all(isinstance(part, str) for part in after) \
            or type(issued) is not int:
        raise unreadable
    return {"scope": scope, "fingerprint": fingerprint, "after": (after[0], after[1]),
            "issued": issued}
