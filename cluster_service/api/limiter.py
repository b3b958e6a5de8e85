"""Rate limiting: per API key on the cluster endpoints, and per client on failed logins.

* The per-key limit is Flask-Limiter's: its storage (``RATE_LIMIT_STORAGE_URI``),
  its strategy, its key layout, its ``X-RateLimit-*`` and ``Retry-After`` headers
  and its fallback to process memory. It is keyed by the key's SHA-256 (never the
  key) and checked only *after* the key has been authenticated (``require_user``
  calls :meth:`KeyLimit.enforce`): a limiter entry per key string tried would let a
  guesser grow every worker's memory with keys that were never valid.
  Unauthenticated traffic is bounded by the per-client guard instead.
* :class:`KeyLimit` checks through Flask-Limiter's own strategy object
  (``Limiter.limiter``) with the limit parsed once at start, rather than through
  its request hooks and decorators, which resolve and parse the limit string
  again on every request (most of a limited request's time in the app,
  docs/performance.md). The keys in the storage, the headers and the 429 are the
  ones Flask-Limiter writes for a ``shared_limit`` with scope ``cluster``.
* Strategy: the sliding window counter. A key's first L requests in a minute
  succeed and the next gets 429, and unlike a fixed window it does not allow a
  double burst at a window edge. The moving window would be exact too, but its
  in-memory storage keeps one timestamp per request.
* ``memory://`` is per process, so N gunicorn workers allow up to N x the limit;
  ``redis://`` shares one limit across every worker and replica. If Redis goes
  away, the limit falls back to process memory (logged once, with
  Flask-Limiter's message) and returns to Redis when its storage answers a check
  again (Flask-Limiter's back-off: 1, 2, 4 ... 32 s); requests keep being served
  either way.
* Probes, metrics and the OpenAPI document carry no limit and no limit headers.
* Failed logins per client address are counted by ``auth_guard.AuthFailureGuard``
  in the same storage.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask, Response, g, request
from flask_limiter import Limiter
from flask_limiter.constants import MAX_BACKEND_CHECKS, HeaderNames
from limits import RateLimitItem, WindowStats, parse
from limits.storage import MemoryStorage
from limits.strategies import STRATEGIES, RateLimiter
from werkzeug.exceptions import TooManyRequests

from ..config import Settings
from ..domain.api_key import ApiKey
from ..domain.auth_guard import storage_options
from .contract import API_KEY_HEADER
from .extension import services_of

EXTENSION = "cluster_limiter"
STRATEGY = "sliding-window-counter"
SCOPE = "cluster"
KEY_PREFIX = "cluster_service"
# Flask-Limiter's logger and its messages for the storage going away and coming back.
log = logging.getLogger("flask-limiter")
FALLBACK_MESSAGE = "Rate limit storage unreachable - falling back to in-memory storage"
RECOVERED_MESSAGE = "Rate limit storage recovered"
_LIMIT, _REMAINING, _RESET = (HeaderNames.LIMIT.value, HeaderNames.REMAINING.value,
                              HeaderNames.RESET.value)
_RETRY_AFTER = HeaderNames.RETRY_AFTER.value


def identity_of(key: ApiKey | None, client: str | None) -> str:
    """The limiter's key: the API key's SHA-256, or the client address when no key is sent."""
    return f"key:{key.digest}" if key is not None else f"addr:{client}"


def api_key_identity() -> str:
    """:func:`identity_of` this request (also Flask-Limiter's key function, which never
    runs: no route carries a Flask-Limiter limit; ``require_user`` passes the key it
    has already read to :meth:`KeyLimit.enforce`)."""
    raw = request.headers.get(API_KEY_HEADER)
    return identity_of(ApiKey(raw) if raw else None, request.remote_addr)


class LimitHit:
    """One request's check against the per-key limit: refused or not, and its window."""

    __slots__ = ("limit", "allowed", "_args")

    def __init__(self, limit: "KeyLimit", allowed: bool, args: tuple[str, ...]) -> None:
        self.limit, self.allowed, self._args = limit, allowed, args

    def add_headers(self, response: Response) -> None:
        """Flask-Limiter's headers: the limit, what remains and when the window resets;
        on its own 429 also ``Retry-After`` (a Retry-After the app set stays as it is)."""
        window = self.limit.window(self._args)
        if window is None:
            return
        reset_at = int(window.reset_time + 1)
        headers = response.headers
        headers.add(_LIMIT, str(self.limit.item.amount))
        headers.add(_REMAINING, str(window.remaining))
        headers.add(_RESET, str(reset_at))
        if not self.allowed and _RETRY_AFTER not in headers:
            headers.set(_RETRY_AFTER, str(int(reset_at - time.time())))


class KeyLimit:
    """The per-key limit, checked through Flask-Limiter's strategy with one parsed item."""

    def __init__(self, limiter: Limiter, per_minute: int) -> None:
        self.limiter = limiter
        self.item: RateLimitItem = parse(f"{per_minute}/minute")
        self._primary: RateLimiter = limiter.limiter
        self._fallback: RateLimiter | None = None
        self._lock = threading.Lock()
        self._dead = False
        self._checks = 0
        self._last_check = time.time()

    def enforce(self, key: ApiKey | None, client: str | None) -> LimitHit:
        """Count one request of ``key`` (or ``client``); raise 429 past the limit.

        The result is kept in ``g`` either way, for the response's headers.
        """
        args = (KEY_PREFIX, identity_of(key, client), SCOPE)
        try:
            allowed = self._strategy().hit(self.item, *args)
        except Exception:
            allowed = self._on_storage_error().hit(self.item, *args)
        hit = g.rate_limit = LimitHit(self, allowed, args)
        if not allowed:
            raise TooManyRequests()
        return hit

    def window(self, args: tuple[str, ...]) -> WindowStats | None:
        """The window's reset time and what remains, or None if no storage answers."""
        try:
            return self._strategy().get_window_stats(self.item, *args)
        except Exception:
            try:
                return self._on_storage_error().get_window_stats(self.item, *args)
            except Exception as error:  # the response goes out without the headers
                # Its type only: no traceback in the log (docs/observability.md).
                log.error("Failed to update rate limit headers",
                          extra={"event": "limiter_headers_failed",
                                 "error_type": type(error).__name__})
                return None

    def _strategy(self) -> RateLimiter:
        if not self._dead:
            return self._primary
        if self._should_check_storage() and self._storage_answers():
            with self._lock:
                if self._dead:
                    self._dead, self._checks = False, 0
                    log.info(RECOVERED_MESSAGE)
            return self._primary
        return self._memory()

    def _on_storage_error(self) -> RateLimiter:
        with self._lock:
            if not self._dead:
                self._dead = True
                self._last_check = time.time()
                log.warning(FALLBACK_MESSAGE)
        return self._memory()

    def _memory(self) -> RateLimiter:
        if self._fallback is None:
            with self._lock:
                if self._fallback is None:
                    self._fallback = STRATEGIES[STRATEGY](MemoryStorage())
        return self._fallback

    def _should_check_storage(self) -> bool:
        """Flask-Limiter's back-off: check after 1, 2, 4 ... seconds, then start again."""
        with self._lock:
            if self._checks > MAX_BACKEND_CHECKS:
                self._checks = 0
            now = time.time()
            if now - self._last_check > 2 ** self._checks:
                self._last_check = now
                self._checks += 1
                return True
            return False

    def _storage_answers(self) -> bool:
        try:
            return bool(self.limiter.storage.check())
        except Exception:
            return False


def init_app(app: Flask, settings: Settings) -> Limiter:
    """Build Flask-Limiter from the settings and give the services the per-key limit.

    Flask-Limiter's own request hooks are removed: no route carries a Flask-Limiter
    limit (the per-key limit is checked by :class:`KeyLimit`), so they would only
    resolve, on every request, that there is nothing to check.
    """
    limiter = Limiter(
        api_key_identity,
        app=app,
        storage_uri=settings.rate_limit_storage_uri,
        storage_options=storage_options(settings),
        strategy=STRATEGY,
        headers_enabled=True,
        retry_after="delta-seconds",
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        key_prefix=KEY_PREFIX,
        enabled=settings.rate_limit_enabled,
    )
    _drop_hooks(app, limiter)
    app.extensions[EXTENSION] = limiter
    if settings.rate_limit_enabled:
        services_of(app).key_limit = KeyLimit(limiter, settings.rate_limit_requests_per_minute)
    return limiter


def _drop_hooks(app: Flask, limiter: Limiter) -> None:
    def owned(hook: object) -> bool:
        bound = getattr(hook, "__self__", None)
        if bound is None:
            bound = next(iter(getattr(hook, "args", ()) or ()), None)
        return bound is limiter

    registries: tuple[dict[Any, list[Any]], ...] = (
        app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs)
    for hooks in registries:
        for funcs in hooks.values():
            funcs[:] = [hook for hook in funcs if not owned(hook)]
