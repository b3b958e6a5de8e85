"""A small thread-safe cache with a time to live and a size bound."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

V = TypeVar("V")


class TtlCache(Generic[V]):
    """Entries expire after ``ttl`` seconds; past ``max_size`` the oldest go first.

    A ``ttl`` of 0 disables the cache (``get`` always misses, ``put`` stores nothing).
    """

    def __init__(self, ttl: float, max_size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> V | None:
        """The live value for ``key``, or None."""
        if self.ttl <= 0:
            return None
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            expires, value = item
            if expires <= self._clock():
                del self._items[key]
                return None
            return value

    def put(self, key: Hashable, value: V, ttl: float | None = None) -> None:
        """Remember ``value`` for ``ttl`` seconds (the cache's own, or less when given)."""
        ttl = self.ttl if ttl is None else min(ttl, self.ttl)
        if ttl <= 0:
            return
        with self._lock:
            self._items[key] = (self._clock() + ttl, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_size:
                self._items.popitem(last=False)

    def discard_if(self, predicate: Callable[[V], bool]) -> int:
        """Forget every entry whose value matches; returns how many. O(size), for rare events."""
        with self._lock:
            doomed = [key for key, (_, value) in self._items.items() if predicate(value)]
            for key in doomed:
                del self._items[key]
        return len(doomed)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._items.clear()
