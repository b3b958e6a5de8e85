"""Brute-force defence: failed authentications counted per client address.

Past ``AUTH_FAILURES_PER_MINUTE`` failures a client gets 429 before the User
Service is asked, so rotating random keys neither escapes the per-key rate
limit nor floods the User Service. An attempt is counted *before* the auth
RPC (an atomic test-and-count, :meth:`AuthFailureGuard.admit`) and forgiven
when it turns out not to be a failure (:meth:`AuthFailureGuard.forgive`): a
burst of concurrent guesses cannot all pass the check before the first
rejection is counted. Clients are named by ``client_address.guard_key``
(IPv4-mapped addresses as IPv4, IPv6 by /64). Counts live in the rate limiter's storage
(``RATE_LIMIT_STORAGE_URI``), so with Redis they are shared by every worker and
replica. While that storage is unreachable, counts fall back to this process's
memory (logged once) and go back to the shared storage once it answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, TypeVar

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from ..config import Settings
from .client_address import guard_key
from .redis_options import redis_options

log = logging.getLogger(__name__)

T = TypeVar("T")
_RETRY_PRIMARY_EVERY = 2.0


def storage_options(settings: Settings) -> dict[str, Any]:
    """The rate limit storage's Redis options: every call bounded by ``REDIS_TIMEOUT``,
    ``rediss://`` verified (``redis_options.py``). A dead or stalled Redis must cost
    milliseconds, not a hung request."""
    return redis_options(settings, settings.rate_limit_storage_uri)


class AuthFailureGuard:
    """Counts failed authentications per client address; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self._item = RateLimitItemPerMinute(settings.auth_failures_per_minute)
        self._enabled = settings.rate_limit_enabled
        self._storage = storage_from_string(settings.rate_limit_storage_uri,
                                            **storage_options(settings))
        self._primary = SlidingWindowCounterRateLimiter(self._storage)
        self._fallback = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._lock = threading.Lock()
        self._fallback_until = 0.0

    def retry_after(self, client: str | None) -> int | None:
        """Seconds until ``client`` may try again, or None when it is not blocked."""
        if not self._enabled:
            return None
        key = _client_key(client)
        if self._run(lambda limiter: limiter.test(self._item, key)):
            return None
        stats = self._run(lambda limiter: limiter.get_window_stats(self._item, key))
        return max(1, int(stats.reset_time - time.time()) + 1)

    def admit(self, client: str | None) -> int | None:
        """Count one attempt for ``client`` now; None if admitted, else seconds until it may.

        The count and the check are one atomic step in the storage, so concurrent
        attempts can never overshoot the limit. Nothing is counted when refused.
        """
        if not self._enabled:
            return None
        key = _client_key(client)
        if self._run(lambda limiter: limiter.hit(self._item, key)):
            return None
        return self.retry_after(client) or 1

    def forgive(self, client: str | None) -> None:
        """Take back an attempt :meth:`admit` counted that was not a failure after all."""
        if self._enabled:
            key = _client_key(client)
            self._run(lambda limiter: limiter.hit(self._item, key, cost=-1))

    def record_failure(self, client: str | None) -> None:
        """Count one failed authentication for ``client``."""
        if self._enabled:
            key = _client_key(client)
            self._run(lambda limiter: limiter.hit(self._item, key))

    def _run(self, action: Callable[[SlidingWindowCounterRateLimiter], T]) -> T:
        """Run ``action`` on the shared storage, or on process memory while that is down."""
        now = time.monotonic()
        if now >= self._fallback_until:
            try:
                result = action(self._primary)
            except Exception as error:
                with self._lock:
                    if self._fallback_until == 0.0:
                        log.warning("rate limit storage unreachable, using per-process limits",
                                    extra={"event": "limiter_fallback",
                                           "error_type": type(error).__name__})
                    self._fallback_until = now + _RETRY_PRIMARY_EVERY
            else:
                if self._fallback_until:
                    self._fallback_until = 0.0
                    log.info("rate limit storage recovered", extra={"event": "limiter_recovered"})
                return result
        return action(self._fallback)


def _client_key(client: str | None) -> str:
    return f"cluster_service/auth-failures/{guard_key(client)}"
