"""Log records written in batches by one background thread per process, not by the logger.

Why: a handler writes under its own lock. With many request threads each writing
its access line, a thread that loses the GIL while it holds that lock (a JSON
format and a write take longer than the interpreter's switch interval) makes
every other thread with a line to write queue behind it; under load the request
threads spent more time waiting for that lock than writing (docs/performance.md).
Here the logging thread only merges its message and puts the record on a queue
(the request id and pid are read by the filter before that, in the thread they
belong to); one writer thread formats and writes, so no request thread ever waits
for a write.

Why batches: a writer woken for every record costs each request a thread switch,
the GIL taken twice more and a write call; against slow agents those hand-offs,
not the formatting, were what the access line cost (docs/performance.md, "Slow
agents"). The writer sleeps until a record arrives, then lingers ``LINGER_S`` so
that the rest of a burst gathers, and writes everything queued with one write
and one flush. A line is therefore on disk at most ``LINGER_S`` after it was
logged, or at once on ``flush()``.

A caller that knows its line's fields can skip the LogRecord: :meth:`hand_over`
queues the values and the function that renders them, and the writer thread
calls it (the access line, one per request: ``api/access_log.py``).

Lines keep their order within each thread. ``flush()`` waits (with a timeout)
until every record queued before it is written; ``close()`` (logging's shutdown
at exit calls both) stops the writer. A forked child starts its own writer: a
thread does not survive ``fork``.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import queue
import threading
import time
from typing import Any, Callable, NamedTuple, Union

FLUSH_TIMEOUT_S = 5.0
LINGER_S = 0.05
# At most this many records per write, so that one huge burst is not held in memory twice.
MAX_BATCH = 2048


class _Marker(logging.LogRecord):
    """Queued by ``flush``: set once the writer has written everything queued before it."""

    def __init__(self) -> None:
        super().__init__("cluster_service.log_writer", logging.DEBUG, "", 0, "", None, None)
        self.reached = threading.Event()


_STOP = None  # queued by close(): the writer writes what came before it and ends

Render = Callable[[float, Any], str]


class _Line(NamedTuple):
    """Values handed over by :meth:`BackgroundLogHandler.hand_over`, rendered by the writer."""

    render: Render
    created: float  # time.time() when handed over: the line's time
    values: Any


_Item = Union[logging.LogRecord, _Line, None]


class _Writer:
    """The one thread that formats and writes this process's records."""

    def __init__(self, records: "queue.SimpleQueue[_Item]",
                 target: logging.Handler, linger: float) -> None:
        self.records, self.target, self.linger = records, target, linger
        # Plain stream and file handlers are written a batch at a time; any other
        # handler gets its records one by one, through its own handle().
        self.batchable = type(target) in (logging.StreamHandler, logging.FileHandler)
        self.thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            first = self.records.get()
            if self.linger > 0 and first is not _STOP and not isinstance(first, _Marker):
                time.sleep(self.linger)
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.records.get_nowait())
                except queue.Empty:
                    break
            if not self._write(batch):
                return

    def _write(self, batch: list[_Item]) -> bool:
        """Write ``batch`` in order; False once the stop mark was reached."""
        pending: list[str] = []
        for record in batch:
            if isinstance(record, _Line):
                pending.append(self._render(record))
            elif record is _STOP or isinstance(record, _Marker):
                self._flush(pending)
                if record is _STOP:
                    return False
                record.reached.set()
            elif record.levelno >= self.target.level and self.target.filter(record):
                if self.batchable and getattr(self.target, "stream", None) is not None:
                    pending.append(self._format(record))
                else:
                    self.target.handle(record)
        self._flush(pending)
        return True

    def _render(self, line: _Line) -> str:
        try:
            return line.render(line.created, line.values) + "\n"
        except Exception:
            self.target.handleError(logging.LogRecord(
                "cluster_service.log_writer", logging.ERROR, "", 0, "log line not rendered",
                None, None))
            return ""

    def _format(self, record: logging.LogRecord) -> str:
        try:
            return self.target.format(record) + getattr(self.target, "terminator", "\n")
        except Exception:
            self.target.handleError(record)
            return ""

    def _flush(self, pending: list[str]) -> None:
        if not pending:
            return
        target = self.target
        # Only batchable targets get here.
        assert isinstance(target, logging.StreamHandler)  # nosec B101
        text = "".join(pending)
        pending.clear()
        target.acquire()
        try:
            target.stream.write(text)
            target.flush()
        except Exception:
            target.handleError(logging.LogRecord("cluster_service.log_writer", logging.ERROR,
                                                 "", 0, "log write failed", None, None))
        finally:
            target.release()


class BackgroundLogHandler(logging.handlers.QueueHandler):
    """Queues records for ``target``, which a writer thread of this process handles."""

    def __init__(self, target: logging.Handler, linger: float = LINGER_S) -> None:
        self.target = target
        self.linger = linger
        super().__init__(queue.SimpleQueue())
        self._writer: _Writer | None = self._start()
        os.register_at_fork(after_in_child=self._after_fork)

    def _start(self) -> _Writer:
        """A new queue and the writer thread that empties it."""
        records: "queue.SimpleQueue[_Item]" = queue.SimpleQueue()
        self.queue = records
        return _Writer(records, self.target, self.linger)

    def _after_fork(self) -> None:
        if self._writer is not None:  # a closed handler stays closed
            self._writer = self._start()

    @property
    def takes_lines(self) -> bool:
        """Whether :meth:`hand_over` may be used: the target is a plain stream or file,
        written a batch at a time, with no level or filter of its own."""
        return (self._writer is not None and self._writer.batchable
                and self.level == logging.NOTSET and self.target.level == logging.NOTSET
                and not self.target.filters)

    def hand_over(self, render: Render, values: Any) -> None:
        """Queue one line: the writer thread calls ``render(created, values)`` for its text
        (one JSON object, no newline), ``created`` being now."""
        self.queue.put_nowait(_Line(render, time.time(), values))

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Merge the message with its arguments here; the writer formats the rest."""
        record.msg, record.args = record.getMessage(), None
        return record

    def flush(self) -> None:
        """Wait until everything queued so far is written (at most FLUSH_TIMEOUT_S)."""
        if self._writer is None:
            return
        marker = _Marker()
        self.queue.put_nowait(marker)
        marker.reached.wait(FLUSH_TIMEOUT_S)

    def close(self) -> None:
        """Write what is queued, stop the writer, close the target."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self.queue.put_nowait(_STOP)
            writer.thread.join(FLUSH_TIMEOUT_S)
        self.target.close()
        super().close()
