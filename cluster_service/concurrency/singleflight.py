"""Collapse concurrent identical calls into one.

When 50 threads ask for the same thing at once (the same uncached API key, the
same user's namespaces of the same agent), only the first one (the leader) does
the work; the others wait for its result. The waiters never wait longer than
their own timeout, and the entry is removed as soon as the leader finishes, so
nothing is cached here: a later call does the work again.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Hashable, TypeVar

from ..errors import RpcTimeout

V = TypeVar("V")
T = TypeVar("T")
_NOTHING: Any = object()


class Shared(Generic[V]):
    """A value shared by the callers of one flight, and what they derive from it, once.

    Identical requests that shared a flight also share what is built from its
    value: the first caller to ask for ``key`` builds it (the others wait for it),
    the rest get the same object. It lives as long as its callers hold it:
    nothing is cached beyond the flight.
    """

    __slots__ = ("value", "_derived", "_lock")

    def __init__(self, value: V) -> None:
        self.value = value
        self._derived: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def derive(self, key: Hashable, build: Callable[[V], T]) -> T:
        """``build(value)``, built once per ``key`` (a build that raises is not kept)."""
        found = self._derived.get(key, _NOTHING)
        if found is _NOTHING:
            with self._lock:
                found = self._derived.get(key, _NOTHING)
                if found is _NOTHING:
                    found = self._derived[key] = build(self.value)
        return found  # type: ignore[no-any-return]


class _Flight(Generic[V]):
    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: V | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[V]):
    """Keyed single flight. ``do`` returns the leader's value or raises its error."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight[V]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def do(self, key: Hashable, work: Callable[[], V], timeout: float) -> tuple[V, bool]:
        """Run ``work`` once for all concurrent callers with ``key``.

        Returns ``(value, shared)``; ``shared`` is True for callers that did not
        run ``work`` themselves. A follower that waits longer than ``timeout``
        raises :class:`RpcTimeout`.
        """
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if leader:
            try:
                flight.value = work()
            except BaseException as error:  # handed to every follower, then re-raised
                flight.error = error
            finally:
                with self._lock:
                    del self._flights[key]
                flight.done.set()
        elif not flight.done.wait(timeout):
            raise RpcTimeout(timeout)
        if flight.error is not None:
            raise flight.error
        return flight.value, not leader  # type: ignore[return-value]
