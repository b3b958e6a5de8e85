"""Auth events: revocations that reach every worker of every replica within a second.

Every worker listens on the fanout exchange ``AUTH_EVENTS_EXCHANGE``
(``cluster_service.auth_events``, durable) through an exclusive queue of its
own. The messages are JSON objects (a contract addition the User Service can
adopt; ``python -m cluster_service.revoke`` publishes them by hand):

* ``{"event": "user_revoked", "user_id": 7}``: drop every cached validation
  of user 7 (its API keys), in this worker and in the shared cache;
* ``{"event": "cache_flush"}``: drop every cached verdict.

Anything else (unknown event, bad ``user_id``, not JSON, too large) is counted
as ``ignored`` and otherwise ignored: an event can never take a worker down.
An event is believed only when it was delivered through the exchange: one
published straight to a worker's queue through the default exchange is
dropped by the transport (``rpc/fanout.py``) and counted as ``wrong_exchange``.

A ``cache_flush`` is acted on at most once per ``FLUSH_EVERY_S`` per worker: a
flood would otherwise empty the caches continuously and turn every request
into an auth RPC. One arriving sooner is counted as ``throttled`` (not logged)
and folded into a single flush at the end of that second, so the last flush
still happens after the last event.
The handler runs in the broker's I/O thread, so it only touches memory and
hands the Redis purge to the shared cache's own thread. A worker whose broker
connection was down may have missed events: on every reconnect it drops its
own cache (``on_gap``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..observability.observer import Observer
from ..rpc.bodies import loads_strict

log = logging.getLogger(__name__)

USER_REVOKED = "user_revoked"
CACHE_FLUSH = "cache_flush"
MAX_EVENT_BYTES = 4096
FLUSH_EVERY_S = 1.0
_MAX_USER_ID = 2**63 - 1


@dataclass(frozen=True)
class AuthEvent:
    """One valid event; ``user_id`` is set for ``user_revoked`` only."""

    event: str
    user_id: int | None = None

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"event": self.event}
        if self.user_id is not None:
            body["user_id"] = self.user_id
        return json.dumps(body).encode()


class CacheOwner(Protocol):
    """What an event acts on (``auth.Authenticator``)."""

    def revoke_user(self, user_id: int) -> None: ...

    def flush(self) -> None: ...

    def forget_local(self) -> None: ...


def parse_event(body: bytes) -> AuthEvent | None:
    """The event in ``body``, or None when it is not a valid one (never raises)."""
    if len(body) > MAX_EVENT_BYTES:
        return None
    try:
        data = loads_strict(body)
    except ValueError:  # UnicodeDecodeError and too deep nesting included
        return None
    if not isinstance(data, dict):
        return None
    event, user_id = data.get("event"), data.get("user_id")
    if event == CACHE_FLUSH:
        return AuthEvent(CACHE_FLUSH)
    if event == USER_REVOKED and isinstance(user_id, int) and not isinstance(user_id, bool) \
            and 0 <= user_id <= _MAX_USER_ID:
        return AuthEvent(USER_REVOKED, user_id)
    return None


class AuthEventHandler:
    """Applies auth events to a cache owner; call it with each message body."""

    def __init__(self, owner: CacheOwner, observer: Observer | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._owner = owner
        self._observer = observer or Observer()
        self._clock = clock
        self._lock = threading.Lock()
        self._last_flush = float("-inf")
        self._deferred: threading.Timer | None = None

    def __call__(self, body: bytes) -> None:
        event = parse_event(body)
        if event is None:
            self._observer.auth_event("ignored")
            log.warning("auth event ignored: not a known event",
                        extra={"event": "auth_event_ignored", "bytes": len(body)})
            return
        if event.user_id is not None:
            self._owner.revoke_user(event.user_id)
        elif not self._flush_now():
            self._observer.auth_event("throttled")
            return
        self._observer.auth_event(event.event)
        log.info("auth event applied", extra={"event": "auth_event", "auth_event": event.event,
                                              "user_id": event.user_id})

    def foreign(self) -> None:
        """A message reached the events queue other than through the exchange: not believed."""
        self._observer.auth_event("wrong_exchange")

    def _flush_now(self) -> bool:
        """Flush unless the last flush was under FLUSH_EVERY_S ago; then defer one (once).

        A flush made now replaces a deferred one still pending, so flushes are never
        closer than FLUSH_EVERY_S, whichever thread makes them.
        """
        with self._lock:
            now = self._clock()
            wait = self._last_flush + FLUSH_EVERY_S - now
            if wait <= 0:
                self._last_flush = now
                if self._deferred is not None:
                    self._deferred.cancel()
                    self._deferred = None
            elif self._deferred is None:
                timer = threading.Timer(wait, lambda: self._deferred_flush(timer))
                timer.daemon = True
                self._deferred = timer
                timer.start()
        if wait <= 0:
            self._owner.flush()
        return wait <= 0

    def _deferred_flush(self, timer: threading.Timer) -> None:
        """The one flush folded from the events throttled in the last second (timer thread)."""
        with self._lock:
            if self._deferred is not timer:  # replaced by a flush made meanwhile
                return
            self._deferred = None
            self._last_flush = self._clock()
        try:
            self._owner.flush()
        except Exception as error:  # a timer thread must not die noisily
            log.warning("deferred auth cache flush failed",
                        extra={"event": "auth_event_unhandled",
                               "error_type": type(error).__name__})

    def on_gap(self) -> None:
        """Events may have been missed (the broker connection was down): forget this
        worker's own cache. The shared cache was purged by the workers that got them."""
        self._owner.forget_local()
        log.info("auth events may have been missed while disconnected: "
                 "this worker's auth cache was dropped", extra={"event": "auth_event_gap"})
