"""What large replies (lists of thousands of items) may hold of a worker's memory.

A 20,000-pod ``get-pods`` reply is ~5.5 MB on the wire and ~22 MB once parsed.
Two bounds keep a worker inside its memory limit however many clients ask:

* **Parsing**: a reply of ``LARGE_REPLY_BYTES`` or more is parsed under one of
  ``LARGE_PARSES`` slots. Parsing is CPU work under the one GIL, so parsing two
  at once is no faster than one after the other, but holds two parsed copies.
* **Waiting**: a call whose previous reply (same agent, command and parameters)
  was ``HUGE_REPLY_BYTES`` or more holds one of ``HUGE_CALLS`` slots from
  before it is sent until its reply is parsed. Otherwise every such reply that
  arrives while another is being parsed waits in memory, unparsed. Calls with
  smaller or unknown replies never wait here.

Every wait ends by the call's own deadline (``Saturated``, 503), as every other
slot does (``admission.py``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Hashable, Iterator

from ..observability.observer import Observer
from .admission import Slots

LARGE_REPLY_BYTES = 1024 * 1024
LARGE_PARSES = 1
HUGE_REPLY_BYTES = 4 * 1024 * 1024
HUGE_CALLS = 4
# How many (agent, command, parameters) reply sizes a worker remembers.
_REMEMBERED = 4096


class LargeReplies:
    """The two bounds of one worker, and the reply sizes they learn from."""

    def __init__(self, observer: Observer | None = None) -> None:
        self._parses = Slots(LARGE_PARSES, observer, scope="parse")
        self._huge = Slots(HUGE_CALLS, observer, scope="parse")
        self._sizes: OrderedDict[Hashable, int] = OrderedDict()
        self._lock = threading.Lock()  # guards _sizes (request threads)

    @contextmanager
    def call(self, key: Hashable, deadline: float) -> Iterator[None]:
        """Around a call and the parse of its reply: waits for a slot if ``key``'s last
        reply was huge."""
        huge = self._sizes.get(key, 0) >= HUGE_REPLY_BYTES
        if huge:
            self._huge.acquire(deadline)
        try:
            yield
        finally:
            if huge:
                self._huge.release()

    @contextmanager
    def parsing(self, key: Hashable, size: int, deadline: float) -> Iterator[None]:
        """Around the parse of a reply of ``size`` bytes to ``key``'s call."""
        self._remember(key, size)
        if size < LARGE_REPLY_BYTES:
            yield
            return
        self._parses.acquire(deadline)
        try:
            yield
        finally:
            self._parses.release()

    def _remember(self, key: Hashable, size: int) -> None:
        with self._lock:
            self._sizes[key] = size
            self._sizes.move_to_end(key)
            if len(self._sizes) > _REMEMBERED:
                self._sizes.popitem(last=False)
