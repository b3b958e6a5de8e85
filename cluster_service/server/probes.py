"""Which requests the worker's main loop answers itself, and where it writes their answers.

Why: Kubernetes restarts a pod whose liveness probe does not answer in time. When
the probes share the pool threads with cluster calls, a pod whose threads all wait
on hung agents (or on clients that do not read) looks dead and is restarted, which
drops every request in flight. So ``GET``/``HEAD`` of ``/health`` and ``/ready`` never
go to the pool: the main loop (which has their complete headers already) runs them
through gunicorn's own parser and the app, into a :class:`Capture`, and writes the
answer without blocking. Both views are a millisecond of work and touch nothing
that blocks (``/ready`` reads a flag of this worker's broker connection).
"""

from __future__ import annotations

from typing import Any

from ..api.contract import BASE_PATH

PROBE_PATHS = frozenset({f"{BASE_PATH}/health".encode(), f"{BASE_PATH}/ready".encode()})
_METHODS = (b"GET", b"HEAD")


def is_probe(head: bytes | bytearray) -> bool:
    """Whether these complete request headers ask for a probe (query string or not)."""
    end = head.find(b"\n")
    if end < 0:
        return False
    parts = bytes(head[:end]).rstrip(b"\r").split(b" ")
    if len(parts) != 3 or parts[0] not in _METHODS:
        return False
    return parts[1].split(b"?", 1)[0] in PROBE_PATHS


def has_body(req: Any) -> bool:
    """Whether a parsed gunicorn request announces a body (then its connection is closed
    after the answer: the main loop never reads a body, it could block)."""
    for name, value in req.headers:
        if name == "TRANSFER-ENCODING" or (name == "CONTENT-LENGTH" and value.strip() != "0"):
            return True
    return False


class Capture:
    """The socket gunicorn's ``Response`` and ``handle_error`` write to: a buffer.

    The main loop then sends the buffer without blocking, and keeps what the client
    has not taken yet, up to ``WRITE_STALL_TIMEOUT`` with no progress.
    """

    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, data: bytes) -> None:
        self.data.extend(data)

    def send(self, data: bytes) -> int:
        self.data.extend(data)
        return len(data)
