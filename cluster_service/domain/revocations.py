"""Recent revocations, so that no validation older than a revocation is used again.

Dropping a revoked user's cache entries is not enough on its own: an auth RPC
that was asked before the revocation may answer after it, and an entry in the
shared cache may be read by a worker that purged its memory before Redis was
purged. Each validation therefore carries the time the User Service was asked,
and one asked at or before the user's revocation (or a flush) is never used.
A revocation is remembered for ``AUTH_CACHE_TTL``: by then every validation
older than it has expired everywhere.

Times are wall-clock (``time.time()``) because shared entries cross hosts; a
clock skew between hosts widens or narrows the window by that skew.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

MAX_REMEMBERED = 100_000


class Revocations:
    """Thread-safe record of recent ``user_revoked`` and ``cache_flush`` events."""

    def __init__(self, horizon: float, clock: Callable[[], float] = time.time) -> None:
        self._horizon = horizon
        self._clock = clock
        self._lock = threading.Lock()
        self._revoked: dict[int, float] = {}
        self._flushed_at = float("-inf")

    def revoke(self, user_id: int) -> None:
        """``user_id``'s validations asked until now are void."""
        now = self._clock()
        with self._lock:
            self._revoked.pop(user_id, None)
            self._revoked[user_id] = now  # insertion order = time order
            self._forget_older_than(now - self._horizon)

    def flush(self) -> None:
        """Every validation asked until now is void."""
        now = self._clock()
        with self._lock:
            self._flushed_at = now
            self._revoked.clear()

    def void(self, user_id: int, asked_at: float) -> bool:
        """Whether a validation of ``user_id`` asked at ``asked_at`` must not be used."""
        with self._lock:
            if asked_at <= self._flushed_at:
                return True
            revoked_at = self._revoked.get(user_id)
        return revoked_at is not None and asked_at <= revoked_at

    def _forget_older_than(self, limit: float) -> None:
        while self._revoked:
            oldest = next(iter(self._revoked))
            if self._revoked[oldest] >= limit and len(self._revoked) <= MAX_REMEMBERED:
                break
            del self._revoked[oldest]
