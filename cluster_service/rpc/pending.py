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
    """One request waiting for its reply.

    The waiting thread blocks on a lock that the deciding thread releases: one
    wake-up. (An Event would wake the waiter into its Condition's lock, which the
    setter still holds, and under load often make it wait a second time.)
    """

    __slots__ = ("call_id", "queue", "max_bytes", "_decided", "_guard", "_done", "_body",
                 "_error")

    def __init__(self, call_id: str, queue: str, max_bytes: int) -> None:
        self.call_id = call_id
        self.queue = queue
        self.max_bytes = max_bytes  # a longer reply fails the call unparsed
        self._decided = False
        self._guard = threading.Lock()  # makes "first outcome wins" atomic
        self._done = threading.Lock()   # held until decided; released once
        self._done.acquire()
        self._body: bytes | None = None
        self._error: RpcError | None = None

    def _decide(self, body: bytes | None, error: RpcError | None) -> bool:
        with self._guard:
            if self._decided:
                return False
            self._decided = True
        self._body, self._error = body, error
        self._done.release()
        return True

    def resolve(self, body: bytes) -> bool:
        """Called by the I/O thread with the reply body; False if already resolved or failed."""
        return self._decide(body, None)

    def fail(self, error: RpcError) -> None:
        """Called when the reply can never come (connection lost, publish failed)."""
        self._decide(None, error)  # a reply (or an earlier failure) may have decided it

    def wait(self, seconds: float, timeout: float) -> bytes:
        """Block until resolved, failed, or ``seconds`` passed (``timeout``: the call's budget)."""
        if not self._done.acquire(timeout=max(0.0, seconds)):
            raise RpcTimeout(timeout)
        self._done.release()  # a second wait (none today) returns at once too
        if self._error is not None:
            raise self._error
        # Set before the lock was released.
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
