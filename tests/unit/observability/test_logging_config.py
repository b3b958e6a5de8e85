"""The JSON log line's shape: the contract's timestamp, whatever the machine's time zone."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Iterator

import pytest

from cluster_service.config import load_settings
from cluster_service.observability.logging_config import configure_logging

MOMENT = 1796282921.123456  # 2026-12-03T07:28:41.123456 UTC


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run in a time zone far from UTC, so a local time cannot pass for UTC."""
    monkeypatch.setenv("TZ", "Pacific/Kiritimati")  # UTC+14
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def logged_line(tmp_path: Path, far_from_utc: None) -> Iterator[dict[str, object]]:
    """Configure logging to a file, log one record created at MOMENT, return its JSON."""
    log_file = tmp_path / "service.log"
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    configure_logging(load_settings({"LOG_FILE": str(log_file), "LOG_LEVEL": "INFO"}))
    (ours,) = [h for h in root.handlers if h not in handlers]
    try:
        record = logging.LogRecord("cluster_service.test", logging.INFO, __file__, 1,
                                   "hello", None, None)
        record.created = MOMENT
        ours.handle(record)
        ours.flush()
        (line,) = log_file.read_text(encoding="utf-8").splitlines()
        yield json.loads(line)
    finally:
        root.removeHandler(ours)
        ours.close()
        root.setLevel(level)


def test_time_is_rfc3339_utc_with_milliseconds_and_z(logged_line: dict[str, object]) -> None:
    assert logged_line["time"] == "2026-12-03T07:28:41.123Z"


def test_line_keeps_its_named_fields(logged_line: dict[str, object]) -> None:
    assert {"time", "level", "logger", "message", "request_id", "pid"} <= set(logged_line)
    assert (logged_line["level"], logged_line["logger"], logged_line["message"]) == (
        "INFO", "cluster_service.test", "hello")
