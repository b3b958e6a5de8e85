"""JSON log lines on stdout (or ``LOG_FILE``), each tagged with the request id.

Secrets policy: no code path logs an API key or a message body at INFO or
above; keys appear only as ``key_fp`` (``security.fingerprint``). Tracebacks
are not logged by the request path (they can hold local variables' values in
their text only when rendered with locals, which we never do), but exception
*types* are.
"""

from __future__ import annotations

import logging
import os
import sys

from pythonjsonlogger.json import JsonFormatter

from ..config import Settings
from .log_writer import BackgroundLogHandler
from .request_context import current_request_id
from .timestamps import utc_timestamp

_HANDLER_NAME = "cluster_service"
_installed: BackgroundLogHandler | None = None


class _RequestIdFilter(logging.Filter):
    """Adds ``request_id`` and ``pid`` to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        record.pid = os.getpid()
        return True


class _DropLimiterBreaches(logging.Filter):
    """Drops Flask-Limiter's "ratelimit … (key) exceeded at endpoint" lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("ratelimit ")


class _UtcJsonFormatter(JsonFormatter):
    """JSON lines whose ``time`` is the contract's timestamp: RFC 3339 UTC, milliseconds, ``Z``.

    Whole seconds in local time with an offset (``logging``'s default) cannot
    order the lines of two workers within a second, nor be joined to the
    responses' timestamps, which are in this form.
    """

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_timestamp(record.created)


def configure_logging(settings: Settings) -> None:
    """Install one JSON handler on the root logger (idempotent: replaces ours if present)."""
    # No format in this process (ours, gunicorn's) names a line's source file, function
    # or process name: don't let logging walk the stack for them on every record (the
    # logging HOWTO's "Optimization"). Thread and pid stay: gunicorn's format uses the pid.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logMultiprocessing = False
    global _installed
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
            old.close()
    _installed = None
    target: logging.Handler = (logging.FileHandler(settings.log_file, encoding="utf-8")
                               if settings.log_file else logging.StreamHandler(sys.stdout))
    target.setFormatter(_UtcJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(pid)s",
        rename_fields={"levelname": "level", "asctime": "time", "name": "logger"}))
    # Formatted and written by a thread of its own (log_writer.py); the filter runs
    # here, in the thread that logs, whose request id it reads.
    handler = BackgroundLogHandler(target)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(_RequestIdFilter())
    root.addHandler(handler)
    _installed = handler
    root.setLevel(settings.log_level)
    # pika logs every connection step at INFO and its own tracebacks at ERROR;
    # our transport reports connection changes itself.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # Flask-Limiter logs each breach at INFO with the limiter key, the key's full
    # SHA-256; our access line already records the 429 with the short fingerprint.
    # Its other lines (storage down, storage recovered) stay.
    limiter_log = logging.getLogger("flask-limiter")
    if not any(isinstance(f, _DropLimiterBreaches) for f in limiter_log.filters):
        limiter_log.addFilter(_DropLimiterBreaches())


def direct_sink(logger: logging.Logger) -> BackgroundLogHandler | None:
    """The handler :func:`configure_logging` installed, if it alone writes ``logger``'s
    records and takes pre-rendered lines (``BackgroundLogHandler.hand_over``); else None.

    A caller handing it a line instead of a record must render the fields this
    module's formatter and filter would (time, level, logger, message, request_id,
    pid, then its own).
    """
    handler = _installed
    if handler is None or not handler.takes_lines:
        return None
    current: logging.Logger | None = logger
    while current is not None:
        if current.handlers:
            # Its one filter is the request id and pid one, which the caller replaces.
            handlers = current.handlers
            return handler if current is logging.root and len(handlers) == 1 \
                and handlers[0] is handler and len(handler.filters) == 1 else None
        if not current.propagate:
            return None
        current = current.parent
    return None
