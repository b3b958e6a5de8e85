"""The access line: one JSON line per request, rendered by the log writer's thread, with
the fields and order of a record written through ``logging``."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from flask import Flask

from cluster_service.api import access_log
from cluster_service.config import load_settings
from cluster_service.observability import logging_config
from cluster_service.observability.logging_config import configure_logging, direct_sink

from ...conftest import API_KEY, BASE

NAMESPACES = f"{BASE}/namespaces?agent_id=demo-agent-1"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """The service's JSON logging to a file, as ``wsgi.py`` configures it; undone after."""
    path = tmp_path / "service.log"
    root = logging.getLogger()
    level = root.level
    configure_logging(load_settings({"LOG_FILE": str(path), "LOG_LEVEL": "INFO"}))
    try:
        yield path
    finally:
        (ours,) = [h for h in root.handlers if h.get_name() == "cluster_service"]
        root.removeHandler(ours)
        ours.close()
        logging_config._installed = None
        root.setLevel(level)


@contextlib.contextmanager
def service_handler_alone() -> Iterator[None]:
    """Without pytest's own capture handlers on the root logger, as in the service."""
    root = logging.getLogger()
    others = [h for h in root.handlers if h.get_name() != "cluster_service"]
    for handler in others:
        root.removeHandler(handler)
    try:
        yield
    finally:
        for handler in others:
            root.addHandler(handler)


def lines(path: Path) -> list[dict[str, Any]]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_request_thread_hands_over_values_the_writer_renders(
        log_file: Path, make_app: Callable[..., Flask],
        monkeypatch: pytest.MonkeyPatch) -> None:
    rendered_by: list[str] = []
    render = access_log.render

    def spying(created: float, values: access_log.Values) -> str:
        rendered_by.append(threading.current_thread().name)
        return render(created, values)

    monkeypatch.setattr(access_log, "render", spying)
    client = make_app().test_client()
    with service_handler_alone():
        assert direct_sink(access_log.log) is not None
        response = client.get(NAMESPACES,
                              headers={"X-API-Key": API_KEY, "X-Request-ID": "access-1"})
        assert rendered_by == []  # handed over once the response is closed
        response.close()
    assert response.status_code == 200
    (line,) = [x for x in lines(log_file) if x.get("event") == "access"]
    assert rendered_by == ["log-writer"]
    assert (line["request_id"], line["method"], line["path"], line["status"], line["user_id"],
            line["level"], line["logger"]) == (
        "access-1", "GET", f"{BASE}/namespaces", 200, 7, "INFO", "cluster_service.access")
    assert len(line["key_fp"]) == 12 and line["duration_ms"] >= 0


def test_the_line_is_the_one_logging_would_write(log_file: Path) -> None:
    """Same fields, same order, same values as the record path (the time aside)."""
    values: access_log.Values = (logging.INFO, "rid-\u00e9", "GET", "/p\u00e4th?", 429, 1.25,
                                 "0123456789ab", "127.0.0.1", None)
    with service_handler_alone():
        sink = direct_sink(access_log.log)
        assert sink is not None
        sink.hand_over(access_log.render, values)
        access_log._as_record(values)
    direct, via_logging = lines(log_file)
    assert direct.pop("time") and via_logging.pop("time")
    assert list(direct.items()) == list(via_logging.items())
    assert log_file.read_text(encoding="utf-8").count("\\u00e9") == 2  # both ASCII-escaped


def test_another_handler_gets_a_record(log_file: Path, make_app: Callable[..., Flask],
                                       caplog: pytest.LogCaptureFixture) -> None:
    """A handler beside the service's (here pytest's) must see the line too: a record."""
    with caplog.at_level(logging.INFO, logger="cluster_service.access"):
        assert direct_sink(access_log.log) is None
        make_app().test_client().get(f"{BASE}/agents/connected",
                                     headers={"X-API-Key": API_KEY}).close()
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "access"]
    assert (record.status, record.user_id) == (200, 7)  # type: ignore[attr-defined]
    assert [x["event"] for x in lines(log_file) if x.get("event") == "access"] == ["access"]
