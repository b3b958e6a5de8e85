"""Records are written by the process's writer thread, in order, and flush waits for them."""

from __future__ import annotations

import logging
import threading

from cluster_service.observability.log_writer import BackgroundLogHandler


class Recording(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[str, str]] = []  # (message, the thread that wrote it)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), threading.current_thread().name))


def test_the_caller_never_writes_and_flush_waits_for_every_line() -> None:
    target = Recording()
    handler = BackgroundLogHandler(target)
    log = logging.getLogger("test_log_writer.order")
    log.propagate, log.level = False, logging.INFO
    log.addHandler(handler)
    try:
        for i in range(200):
            log.info("line %d", i)
        handler.flush()
        assert [message for message, _ in target.lines] == [f"line {i}" for i in range(200)]
        assert {writer for _, writer in target.lines} != {threading.current_thread().name}
    finally:
        log.removeHandler(handler)
        handler.close()


def test_close_writes_what_is_queued_and_stops_the_writer() -> None:
    target = Recording()
    handler = BackgroundLogHandler(target)
    before = threading.active_count()
    handler.handle(logging.LogRecord("x", logging.INFO, "", 0, "last words", None, None))
    handler.close()
    assert target.lines and target.lines[-1][0] == "last words"
    assert threading.active_count() == before - 1
