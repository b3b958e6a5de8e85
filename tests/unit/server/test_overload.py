"""The main loop's overload pieces that need no server: which requests are probes, where
headers end and when they are too large, the answers written without a thread, and the
shed log's once-per-interval line."""

from __future__ import annotations

import json
import logging

import pytest

from cluster_service.server import overload
from cluster_service.server.probes import Capture, has_body, is_probe
from cluster_service.server.worker import _HeaderRead

BASE = b"/api/v3.0/cluster"


@pytest.mark.parametrize("head, expected", [
    (b"GET " + BASE + b"/health HTTP/1.1\r\nHost: x\r\n\r\n", True),
    (b"HEAD " + BASE + b"/ready HTTP/1.1\r\n\r\n", True),
    (b"GET " + BASE + b"/health?verbose=1 HTTP/1.1\r\n\r\n", True),
    (b"GET " + BASE + b"/health HTTP/1.0\n\n", True),
    (b"POST " + BASE + b"/health HTTP/1.1\r\n\r\n", False),
    (b"GET " + BASE + b"/healthz HTTP/1.1\r\n\r\n", False),
    (b"GET " + BASE + b"/namespaces?agent_id=a HTTP/1.1\r\n\r\n", False),
    (b"GET /health HTTP/1.1\r\n\r\n", False),
    (b"GET " + BASE + b"/health", False),  # no line end yet
    (b"GET  " + BASE + b"/health HTTP/1.1\r\n\r\n", False),  # not a request line
])
def test_probe_requests_are_recognised_by_method_and_path(head: bytes, expected: bool) -> None:
    assert is_probe(head) is expected


class _Req:
    def __init__(self, headers: list[tuple[str, str]]) -> None:
        self.headers = headers


def test_a_request_announcing_a_body_is_one() -> None:
    assert not has_body(_Req([("HOST", "x")]))
    assert not has_body(_Req([("CONTENT-LENGTH", "0")]))
    assert has_body(_Req([("CONTENT-LENGTH", "12")]))
    assert has_body(_Req([("TRANSFER-ENCODING", "chunked")]))


def test_capture_keeps_what_is_written() -> None:
    out = Capture()
    out.sendall(b"ab")
    assert out.send(b"c") == 1
    assert bytes(out.data) == b"abc"


class TestHeaderRead:
    def test_complete_once_a_blank_line_arrives_even_across_reads(self) -> None:
        state = _HeaderRead(deadline=0.0)
        state.buffer.extend(b"GET / HTTP/1.1\r\nHost: x\r\n\r")
        assert not state.complete(1024)
        state.buffer.extend(b"\nnext request")
        assert state.complete(1024) and not state.too_large

    def test_bare_line_feeds_end_headers_too(self) -> None:
        state = _HeaderRead(deadline=0.0)
        state.buffer.extend(b"GET / HTTP/1.0\nHost: x\n\n")
        assert state.complete(1024) and not state.too_large

    def test_pipelined_bytes_beyond_the_limit_are_not_headers(self) -> None:
        state = _HeaderRead(deadline=0.0)
        state.buffer.extend(b"GET / HTTP/1.1\r\n\r\n" + b"x" * 5000)
        assert state.complete(1024) and not state.too_large

    def test_headers_that_end_beyond_the_limit_are_too_large(self) -> None:
        state = _HeaderRead(deadline=0.0)
        state.buffer.extend(b"GET / HTTP/1.1\r\nX: " + b"a" * 2000 + b"\r\n\r\n")
        assert state.complete(1024) and state.too_large

    def test_no_end_within_the_limit_is_too_large(self) -> None:
        state = _HeaderRead(deadline=0.0)
        state.buffer.extend(b"GET / HTTP/1.1\r\nX: " + b"a" * 1000)
        assert not state.complete(1024)
        state.buffer.extend(b"a" * 100)
        assert state.complete(1024) and state.too_large


class TestAnswers:
    def test_the_client_request_id_if_sane_else_a_new_one(self) -> None:
        assert overload.call_id_of(b"GET / HTTP/1.1\r\nx-request-id:  abc-1 \r\n\r\n") == "abc-1"
        fresh = overload.call_id_of(b"GET / HTTP/1.1\r\nX-Request-ID: bad id!\r\n\r\n")
        assert fresh != "bad id!" and len(fresh) == 36
        assert len(overload.call_id_of(b"")) == 36

    def test_503_carries_the_envelope_retry_after_and_closes(self) -> None:
        raw = overload.saturated("rid-7")
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 503 Service Unavailable"
        headers = dict(line.split(": ", 1) for line in lines[1:])
        assert headers["Retry-After"] == "5"
        assert headers["X-Request-ID"] == "rid-7"
        assert headers["Connection"] == "close"
        assert int(headers["Content-Length"]) == len(body)
        envelope = json.loads(body)
        assert envelope["error"] == "service_unavailable" and envelope["success"] is False
        assert envelope["request_id"] == "rid-7" and envelope["timestamp"].endswith("Z")

    def test_431_names_the_error_and_has_no_retry_after(self) -> None:
        raw = overload.headers_too_large("rid-8")
        assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        assert b"Retry-After" not in raw
        assert json.loads(raw.partition(b"\r\n\r\n")[2])["error"] == \
            "request_header_fields_too_large"


class TestShedLog:
    def test_counts_at_once_and_logs_once_per_interval(
            self, caplog: pytest.LogCaptureFixture) -> None:
        now = [0.0]
        counted: list[str] = []
        shed = overload.ShedLog(counted.append, interval=10.0, clock=lambda: now[0])
        with caplog.at_level(logging.WARNING, logger="cluster_service.server"):
            for _ in range(50):
                shed.shed("queue_timeout")
            shed.shed("write_stall")
            now[0] = 5.0
            shed.tick()
            assert caplog.records == []
            now[0] = 10.0
            shed.tick()
            shed.tick()
            now[0] = 25.0
            shed.tick()  # nothing new: no line
        assert len(counted) == 51
        (record,) = caplog.records
        assert record.shed == {"queue_timeout": 50, "write_stall": 1}  # type: ignore[attr-defined]
        assert "queue_timeout=50" in record.getMessage()
