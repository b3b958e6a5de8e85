"""One call waiting for its reply, and how long its request message may wait for a peer.

A :class:`PendingCall` is shared by two threads: the request thread that waits on it
and the I/O thread that resolves or fails it (``client.py`` has the threading model).
Whichever comes first decides it; later outcomes are ignored.
"""

from __future__ import annotations

import math
import threading

from ..errors import RpcError, RpcTimeout


class PendingCall:
    """One request waiting for its reply."""

    __slots__ = ("request_id", "queue", "_event", "_body", "_error")

    def __init__(self, request_id: str, queue: str) -> None:
        self.request_id = request_id
        self.queue = queue
        self._event = threading.Event()
        self._body: bytes | None = None
        self._error: RpcError | None = None

    def resolve(self, body: bytes) -> bool:
        """Called by the I/O thread with the reply body; False if already resolved or failed."""
        if self._event.is_set():
            return False
        self._body = body
        self._event.set()
        return True

    def fail(self, error: RpcError) -> None:
        """Called when the reply can never come (connection lost, publish failed)."""
        if self._event.is_set():  # a reply (or an earlier failure) already decided it
            return
        self._error = error
        self._event.set()

    def wait(self, seconds: float, timeout: float) -> bytes:
        """Block until resolved, failed, or ``seconds`` passed (``timeout``: the call's budget)."""
        if not self._event.wait(seconds):
            raise RpcTimeout(timeout)
        if self._error is not None:
            raise self._error
        # Set together with the event.
        assert self._body is not None  # nosec B101
        return self._body


def expiration_ms(timeout: float, remaining: float) -> int:
    """The request message's TTL: what is left of the call's timeout, in ms.

    Rounded up to a tenth of a second, so that a call that did not wait for a slot
    carries exactly its timeout (the contract's ``expiration``) rather than a value a
    millisecond or two short of it; never above the timeout, never below 1 ms.
    """
    budget = math.ceil(timeout * 1000)
    return max(1, min(budget, 100 * math.ceil(remaining * 10)))
