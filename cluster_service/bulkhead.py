"""Bounded concurrency that tells a stuck service from a busy one.

A plain semaphore with a 100 ms acquire timeout turns an ordinary burst of fast
requests into 503s whenever slots happen to be taken for a moment, or the CPU
is briefly starved. The contract says "saturated" means RPCs are *stuck*, not
that requests arrive together. So a waiter here gives up only when

* it has waited at least ``wait`` (about 100 ms), and
* every slot has been held for at least ``stuck_after`` (3 x ``wait`` by
  default: the youngest holder is that old, nothing is turning over),

or when it has waited ``max_wait`` in all. A burst of fast calls always finds
young holders and waits for them; a storm on a hung agent finds only old ones
and fails after ``wait``. Why 3 x: at 10 x (1 s) a storm on a hung agent held
every refused request's thread for a second before its 503, and /health's p99
rose to 1-1.5 s behind them; at 3 x both the fast burst and the storm tests
pass (tests/integration/test_faults.py).
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Hashable

from .exceptions import Saturated


class Bulkhead:
    """At most ``limit`` holders at once; see the module docstring for the waiting rule."""

    def __init__(self, limit: int, wait: float, max_wait: float,
                 stuck_after: float | None = None) -> None:
        self.limit = limit
        self.wait = wait
        self.max_wait = max_wait
        self.stuck_after = 3 * wait if stuck_after is None else stuck_after
        self._holders: dict[int, float] = {}
        self._tokens = itertools.count()
        self._cond = threading.Condition()
        self._local = threading.local()

    @property
    def held(self) -> int:
        """How many slots are taken now."""
        return len(self._holders)

    def acquire(self) -> int:
        """Take a slot and return its token for :meth:`release`, or raise Saturated."""
        with self._cond:
            if len(self._holders) >= self.limit:
                self._wait_for_slot()
            token = next(self._tokens)
            self._holders[token] = time.monotonic()
            return token

    def _wait_for_slot(self) -> None:
        started = time.monotonic()
        while len(self._holders) >= self.limit:
            now = time.monotonic()
            waited = now - started
            youngest_age = now - max(self._holders.values())
            if waited >= self.max_wait or (waited >= self.wait
                                           and youngest_age >= self.stuck_after):
                raise Saturated()
            # Wake up when a slot frees, or when the rule above may have become true.
            next_check = max(self.wait - waited, self.stuck_after - youngest_age, 0.005)
            self._cond.wait(min(next_check, self.max_wait - waited))

    def release(self, token: int) -> None:
        """Give back the slot taken with ``token``."""
        with self._cond:
            del self._holders[token]
            self._cond.notify()

    def __enter__(self) -> "Bulkhead":
        tokens = getattr(self._local, "tokens", None)
        if tokens is None:
            tokens = self._local.tokens = []
        tokens.append(self.acquire())
        return self

    def __exit__(self, *exc: object) -> None:
        self.release(self._local.tokens.pop())


class KeyedBulkhead:
    """One :class:`Bulkhead` per key (per agent), created on demand and dropped when idle."""

    def __init__(self, limit: int, wait: float, max_wait: float,
                 stuck_after: float | None = None) -> None:
        self._args = (limit, wait, max_wait, stuck_after)
        self._lock = threading.Lock()
        self._heads: dict[Hashable, tuple[Bulkhead, int]] = {}

    def __len__(self) -> int:
        return len(self._heads)

    def acquire(self, key: Hashable) -> int:
        """Take a slot for ``key`` and return its token, or raise :class:`Saturated`."""
        with self._lock:
            head, users = self._heads.get(key, (None, 0))
            if head is None:
                head = Bulkhead(*self._args)
            self._heads[key] = (head, users + 1)
        try:
            return head.acquire()
        except Saturated:
            self._forget(key)
            raise

    def release(self, key: Hashable, token: int) -> None:
        """Give back the slot taken for ``key``."""
        self._heads[key][0].release(token)
        self._forget(key)

    def _forget(self, key: Hashable) -> None:
        with self._lock:
            head, users = self._heads[key]
            if users <= 1:
                del self._heads[key]
            else:
                self._heads[key] = (head, users - 1)
