"""Log records written by one background thread per process, not by the thread that logs.

Why: a handler writes under its own lock. With many request threads each writing
its access line, a thread that loses the GIL while it holds that lock (a JSON
format and a write take longer than the interpreter's switch interval) makes
every other thread with a line to write queue behind it; under load the request
threads spent more time waiting for that lock than writing (docs/performance.md).
Here the logging thread only merges its message and puts the record on a queue
(the request id and pid are read by the filter before that, in the thread they
belong to); one writer thread formats and writes, so no request thread ever waits
for a write.

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

FLUSH_TIMEOUT_S = 5.0


class _Marker(logging.LogRecord):
    """Queued by ``flush``: set once the writer has reached it."""

    def __init__(self) -> None:
        super().__init__("cluster_service.log_writer", logging.DEBUG, "", 0, "", None, None)
        self.reached = threading.Event()


class _Writer(logging.handlers.QueueListener):
    def handle(self, record: logging.LogRecord) -> None:
        if isinstance(record, _Marker):
            record.reached.set()
            return
        super().handle(record)


class BackgroundLogHandler(logging.handlers.QueueHandler):
    """Queues records for ``target``, which a writer thread of this process handles."""

    def __init__(self, target: logging.Handler) -> None:
        self.target = target
        super().__init__(queue.SimpleQueue())
        self._writer: _Writer | None = self._start()
        os.register_at_fork(after_in_child=self._after_fork)

    def _start(self) -> _Writer:
        writer = _Writer(self.queue, self.target)
        writer.start()
        return writer

    def _after_fork(self) -> None:
        if self._writer is not None:  # a closed handler stays closed
            self.queue = queue.SimpleQueue()
            self._writer = self._start()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        """Merge the message with its arguments here; the writer formats the rest."""
        record.msg, record.args = record.getMessage(), None
        return record

    def flush(self) -> None:
        """Wait until everything queued so far is written (at most FLUSH_TIMEOUT_S)."""
        marker = _Marker()
        self.queue.put_nowait(marker)
        if marker.reached.wait(FLUSH_TIMEOUT_S):
            self.target.flush()

    def close(self) -> None:
        """Write what is queued, stop the writer, close the target."""
        writer, self._writer = self._writer, None
        if writer is not None and writer._thread is not None:
            self.flush()
            writer.enqueue_sentinel()
            writer._thread.join(FLUSH_TIMEOUT_S)
            writer._thread = None
        self.target.close()
        super().close()
