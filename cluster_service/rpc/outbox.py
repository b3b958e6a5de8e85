"""Publishes waiting for the I/O thread, handed over with one wake-up per batch.

A request thread that hands a publish to the I/O thread wakes it through pika's
``add_callback_threadsafe``: a write to the I/O loop's wake-up socket, and for the
I/O thread a wake-up, the GIL taken back and a poll. Under load requests arrive
together; here only the first publish of a batch wakes the I/O thread, the others
join the batch it will take (docs/performance.md, "Slow agents").

Threads: :meth:`Outbox.put` runs in request threads, :meth:`Outbox.take` in the
I/O thread (a batch to publish, or everything left when the connection is lost).
"""

from __future__ import annotations

import threading
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class Outbox(Generic[T]):
    """Items in arrival order, and whether the I/O thread has been woken to take them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[T] = []
        self._woken = False

    def put(self, item: T, wake: Callable[[], None]) -> None:
        """Add ``item``; call ``wake()`` unless a wake-up is already on its way.

        If ``wake`` raises, the item is taken back and the error propagates.
        """
        with self._lock:
            self._items.append(item)
            if self._woken:
                return
            try:
                wake()
            except BaseException:
                self._items.pop()
                raise
            self._woken = True

    def take(self) -> list[T]:
        """Everything put so far; the next put wakes the I/O thread again."""
        with self._lock:
            items, self._items = self._items, []
            self._woken = False
        return items
