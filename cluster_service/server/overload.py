"""What the worker's main loop answers and reports when it sheds load.

Why here and not in the app: these answers are written by the worker's main loop,
without a thread, exactly when no thread is free (a request that waited too long
for one, a connection beyond the limit, headers too large to hold), so they cannot
go through Flask. They still carry the contract's error envelope, ``X-Request-ID``
and, on a 503, ``Retry-After``.

Reporting: every shed is counted at once in ``cluster_http_shed_total{reason}``,
but logged once per ``LOG_INTERVAL_S`` at most, as one line with the counts by
reason: under an attack a line per request would flood the log (and its writer)
exactly when the pod is busiest.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
import re
import threading
import time
from typing import Any, Callable

from ..api.contract import HTTP_ERRORS
from ..api.request_id import choose_request_id
from ..errors import RETRY_AFTER_SECONDS
from ..observability.timestamps import utc_timestamp

log = logging.getLogger("cluster_service.server")

LOG_INTERVAL_S = 10.0

# Why a request was answered 503 or a connection closed by the server itself.
REASONS = (
    "queue_timeout",         # a complete request found no thread within REQUEST_QUEUE_TIMEOUT
    "too_many_connections",  # a new connection beyond the limit, nothing idle to close for it
    "idle_closed",           # an idle connection closed to make room for a new one
    "headers_too_large",     # request headers over MAX_HEADER_BYTES (431)
    "header_memory",         # the worker's half-read headers over MAX_PENDING_HEADER_BYTES
    "write_stall",           # the client read nothing of its response for WRITE_STALL_TIMEOUT
    "pipelining",            # too many probes pipelined in a row on one connection
)

_REQUEST_ID = re.compile(rb"\nx-request-id[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


def sent_request_id(head: bytes | bytearray) -> str | None:
    """The ``X-Request-ID`` these raw request headers carry, if any (not yet checked)."""
    found = _REQUEST_ID.search(head)
    return found.group(1).decode("latin-1").strip() if found else None


def call_id_of(head: bytes | bytearray) -> str:
    """The request id a response to these raw request headers must carry (the client's
    if sane, as the app decides, else a new one)."""
    return choose_request_id(sent_request_id(head))


def error_response(status: int, error: str, message: str, request_id: str,
                   retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 response with the contract's error envelope; it closes the connection."""
    body = json.dumps({"success": False, "error": error, "message": message,
                       "request_id": request_id, "timestamp": utc_timestamp()}).encode()
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
             "Content-Type: application/json",
             f"Content-Length: {len(body)}",
             f"X-Request-ID: {request_id}",
             "Connection: close"]
    if retry_after is not None:
        lines.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def saturated(request_id: str) -> bytes:
    """503 ``service_unavailable``, as the app answers a call that found no slot."""
    return error_response(503, "service_unavailable", "Service is saturated, retry later",
                          request_id, RETRY_AFTER_SECONDS)


def headers_too_large(request_id: str) -> bytes:
    """431, as the app's error handler names it."""
    return http_error(431, request_id)


def http_error(status: int, request_id: str) -> bytes:
    """An HTTP-level error (``HTTP_ERRORS``) answered before the app saw the request."""
    code, message = HTTP_ERRORS.get(status, HTTP_ERRORS[500])
    return error_response(status, code, message, request_id)


class ShedLog:
    """Counts sheds by reason into the metric at once; logs their sum once per interval.

    Safe from any thread (the main loop sheds most; a pool thread sees write stalls).
    """

    def __init__(self, count: Callable[[str], None] | None = None,
                 interval: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._count = count
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, int] = {}
        self._next_log = clock() + interval

    def shed(self, reason: str) -> None:
        """One request refused or connection closed, for ``reason``."""
        if self._count is not None:
            self._count(reason)
        with self._lock:
            self._pending[reason] = self._pending.get(reason, 0) + 1

    def tick(self) -> None:
        """Log the counts since the last line, if an interval has passed (main loop)."""
        now = self._clock()
        if now < self._next_log:
            return
        with self._lock:
            pending, self._pending = self._pending, {}
            self._next_log = now + self._interval
        if pending:
            log.warning("shedding load: %s in the last %.0f s", ", ".join(
                f"{reason}={n}" for reason, n in sorted(pending.items())), self._interval,
                extra={"event": "shed", "shed": pending})


def prometheus_counter() -> Callable[[str], None]:
    """``ShedLog``'s metric hook; imported only in a worker with metrics on (after fork,
    once gunicorn.conf.py has set the multiprocess directory)."""
    from ..observability import metrics

    children: dict[str, Any] = {}

    def count(reason: str) -> None:
        child = children.get(reason)
        if child is None:
            child = children[reason] = metrics.SHED.labels(reason)
        child.inc()

    return count
