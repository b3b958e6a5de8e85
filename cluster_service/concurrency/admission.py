"""Admission: how long a cluster call waits for a slot, and for what.

A cluster call is almost all waiting (for the broker, the agent, the Kubernetes
API), so concurrency is sized by what waiting costs, not by CPU: threads are
many (``GUNICORN_THREADS``) and the bounds here are on RPCs, not requests.

* :class:`Slots`, one per worker for RPCs waiting for a reply (reply memory), and
  one per agent (:class:`KeyedSlots`, what one agent is asked at once). A call
  that finds them full waits in line until the deadline of its own timeout
  budget, not a fixed 100 ms: a slow agent is a busy one, not a hung one. It
  leaves the line early only when ``give_up`` says so (the agent's breaker opened).

There is no bound on requests per worker below the thread count: in a
synchronous worker a request waiting in such a line holds a thread just like one
being served, so it would protect nothing, and it would turn a burst that lands
unevenly on the workers into 503s. Telling a hung agent from a slow one, and so
keeping hung agents from taking threads, is the circuit breaker's job
(``breaker.py``), by outcomes (timeouts), never by how old a call is.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Callable, Generic, Hashable, Iterator, TypeVar

from ..errors import ClusterServiceError, Saturated
from ..observability.observer import Observer

K = TypeVar("K", bound=Hashable)

# How often a waiter re-checks ``give_up`` when nobody wakes it (a breaker that
# opened in another worker thread always calls wake_all, so this is a backstop).
_RECHECK_SECONDS = 0.25


class Slots:
    """At most ``limit`` holders; others wait in line until their own deadline.

    A waiter whose deadline passes is reported to ``observer`` as saturation of ``scope``.
    """

    def __init__(self, limit: int, observer: Observer | None = None, scope: str = "rpc",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._observer = observer or Observer()
        self._scope = scope
        self._clock = clock
        self._held = 0
        self._waiting = 0
        self._cond = threading.Condition()

    @property
    def held(self) -> int:
        """How many slots are taken now."""
        return self._held

    @property
    def waiting(self) -> int:
        """How many callers wait in line now."""
        return self._waiting

    def acquire(self, deadline: float,
                give_up: Callable[[], ClusterServiceError | None] | None = None) -> None:
        """Take a slot before ``deadline`` (a ``clock`` value), or raise.

        Raises :class:`Saturated` when the deadline passes in line, or whatever
        ``give_up`` returns once it returns an error (checked first, and on every
        wake-up: a slot that frees because its holder timed out must not go to a
        caller whose agent has just been isolated).
        """
        with self._cond:
            self._waiting += 1
            try:
                while True:
                    reason = give_up() if give_up is not None else None
                    if reason is not None:
                        raise reason
                    if self._held < self.limit:
                        self._held += 1
                        return
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    self._cond.wait(min(remaining, _RECHECK_SECONDS))
            finally:
                self._waiting -= 1
        self._observer.saturated(self._scope)
        raise Saturated()

    def release(self) -> None:
        """Give back one slot and let the next waiter in."""
        with self._cond:
            self._held -= 1
            self._cond.notify()

    def wake_all(self) -> None:
        """Make every waiter re-check its ``give_up`` now."""
        with self._cond:
            self._cond.notify_all()


class KeyedSlots(Generic[K]):
    """One :class:`Slots` per key (per agent), created on demand and dropped when idle."""

    def __init__(self, limit: int, observer: Observer | None = None, scope: str = "agent",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._args = (limit, observer, scope, clock)
        self._lock = threading.Lock()
        self._slots: dict[K, tuple[Slots, int]] = {}

    def __len__(self) -> int:
        return len(self._slots)

    @contextmanager
    def held(self, key: K, deadline: float,
             give_up: Callable[[], ClusterServiceError | None] | None = None) -> Iterator[None]:
        """Hold one of ``key``'s slots for the block; see :meth:`Slots.acquire`."""
        with self._lock:
            slots, users = self._slots.get(key, (None, 0))
            if slots is None:
                slots = Slots(*self._args)
            self._slots[key] = (slots, users + 1)
        try:
            slots.acquire(deadline, give_up)
            try:
                yield
            finally:
                slots.release()
        finally:
            self._forget(key)

    def wake_all(self, key: K) -> None:
        """Make the waiters of ``key`` re-check their ``give_up`` now."""
        with self._lock:
            entry = self._slots.get(key)
        if entry is not None:
            entry[0].wake_all()

    def _forget(self, key: K) -> None:
        with self._lock:
            slots, users = self._slots[key]
            if users <= 1:
                del self._slots[key]
            else:
                self._slots[key] = (slots, users - 1)
