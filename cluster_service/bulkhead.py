"""Bounded concurrency that tells a stuck service from a busy one.

A plain semaphore with a 100 ms acquire timeout would turn an ordinary burst
of fast requests into 503s whenever slots happen to be taken for a moment. The
contract says "saturated" means RPCs are *stuck*, so a waiter here gives up only
after a whole ``wait`` window passed without any slot being released. As long
as slots keep turning over, it keeps waiting, up to ``max_wait``.
"""

from __future__ import annotations

import threading
import time
from typing import Hashable

from .exceptions import Saturated


class Bulkhead:
    """At most ``limit`` holders at once; see the module docstring for the waiting rule."""

    def __init__(self, limit: int, wait: float, max_wait: float) -> None:
        self.limit = limit
        self.wait = wait
        self.max_wait = max_wait
        self._held = 0
        self._releases = 0
        self._cond = threading.Condition()

    @property
    def held(self) -> int:
        """How many slots are taken now."""
        return self._held

    def acquire(self) -> None:
        """Take a slot or raise :class:`Saturated`."""
        with self._cond:
            if self._held < self.limit:
                self._held += 1
                return
            deadline = time.monotonic() + self.max_wait
            while True:
                seen = self._releases
                window_end = min(time.monotonic() + self.wait, deadline)
                while self._held >= self.limit:
                    remaining = window_end - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._held < self.limit:
                    self._held += 1
                    return
                if self._releases == seen or time.monotonic() >= deadline:
                    raise Saturated()

    def release(self) -> None:
        """Give a slot back."""
        with self._cond:
            self._held -= 1
            self._releases += 1
            self._cond.notify()

    def __enter__(self) -> "Bulkhead":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class KeyedBulkhead:
    """One :class:`Bulkhead` per key (per agent), created on demand and dropped when idle."""

    def __init__(self, limit: int, wait: float, max_wait: float) -> None:
        self._limit, self._wait, self._max_wait = limit, wait, max_wait
        self._lock = threading.Lock()
        self._heads: dict[Hashable, tuple[Bulkhead, int]] = {}

    def __len__(self) -> int:
        return len(self._heads)

    def acquire(self, key: Hashable) -> None:
        """Take a slot for ``key`` or raise :class:`Saturated`."""
        with self._lock:
            head, users = self._heads.get(key, (None, 0))
            if head is None:
                head = Bulkhead(self._limit, self._wait, self._max_wait)
            self._heads[key] = (head, users + 1)
        try:
            head.acquire()
        except Saturated:
            self._forget(key)
            raise

    def release(self, key: Hashable) -> None:
        """Give back the slot taken for ``key``."""
        head = self._heads[key][0]
        head.release()
        self._forget(key)

    def _forget(self, key: Hashable) -> None:
        with self._lock:
            head, users = self._heads[key]
            if users <= 1:
                del self._heads[key]
            else:
                self._heads[key] = (head, users - 1)
