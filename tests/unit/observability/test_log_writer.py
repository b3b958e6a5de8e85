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


class CountingStream:
    """A text stream that records each write call."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_a_burst_is_written_with_one_write_not_one_per_line() -> None:
    stream = CountingStream()
    target = logging.StreamHandler(stream)  # type: ignore[arg-type]
    target.setFormatter(logging.Formatter("%(message)s"))
    handler = BackgroundLogHandler(target)
    try:
        for i in range(300):
            handler.handle(logging.LogRecord("x", logging.INFO, "", 0, "line %d", (i,), None))
        handler.flush()
        assert "".join(stream.writes) == "".join(f"line {i}\n" for i in range(300))
        assert len(stream.writes) <= 3, len(stream.writes)  # the burst, not 300 writes
    finally:
        handler.close()


def test_the_target_level_and_filters_still_apply() -> None:
    stream = CountingStream()
    target = logging.StreamHandler(stream)  # type: ignore[arg-type]
    target.setLevel(logging.WARNING)
    target.addFilter(lambda record: "secret" not in record.getMessage())
    handler = BackgroundLogHandler(target)
    try:
        for level, message in ((logging.INFO, "quiet"), (logging.WARNING, "loud"),
                               (logging.ERROR, "a secret")):
            handler.handle(logging.LogRecord("x", level, "", 0, message, None, None))
        handler.flush()
        assert "".join(stream.writes) == "loud\n"
    finally:
        handler.close()
