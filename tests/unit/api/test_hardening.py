"""Input hardening: API key shape, query strings, agent_id, oversized requests, and a
property-based test that no input yields a 500 or a body outside the error envelope.

Flask test client over the FakeTransport, except ``TestGunicornLimits`` which sends
oversized headers to the real gunicorn (its limits come from gunicorn.conf.py).
"""

from __future__ import annotations

import json

import socket
import string
from typing import Any, Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from cluster_service.api.extension import services

from ...conftest import API_KEY, BASE
from ...support.fake_transport import FakeTransport
from ...support.service import ServiceProcess

AUTH_QUEUE = "cluster_auth_requests"
NAMESPACE_QUEUE = "cluster_namespace_requests"
NAMESPACES = f"{BASE}/namespaces"
AGENTS = f"{BASE}/agents/connected"
ENVELOPE = {"success", "error", "message", "request_id", "timestamp"}
LEAK_MARKERS = ("Traceback", 'File "', "RuntimeError", "Exception", "werkzeug", ".py")


def assert_envelope(response: TestResponse, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == ENVELOPE, body
    assert body["success"] is False
    assert body["error"] == error
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body  # type: ignore[no-any-return]


def raw_query(client: FlaskClient, path: str, query: str, key: str = API_KEY) -> TestResponse:
    """GET with QUERY_STRING exactly as given (a WSGI str: one character per byte)."""
    return client.get(path, headers={"X-API-Key": key},
                      environ_overrides={"QUERY_STRING": query})


class TestApiKeyShape:
    @pytest.mark.parametrize("key", [
        "k" * 257,
        "k" * 5000,
        "demo\x01key",
        "demo\x00key",
        "demo\x7fkey",
        "demo\tkey",
        "demo key",
        "démo-key",
        "demo-key\x1b[31m",
    ], ids=["257-chars", "5000-chars", "SOH", "NUL", "DEL", "TAB", "space", "non-ascii", "ANSI"])
    def test_malformed_key_is_401_without_any_rpc(self, client: FlaskClient,
                                                  transport: FakeTransport, key: str) -> None:
        for path in (f"{NAMESPACES}?agent_id=demo-agent-1", AGENTS):
            body = assert_envelope(client.get(path, headers={"X-API-Key": key}), 401,
                                   "authentication_failed")
            assert body["message"] == "Authentication failed"
        assert transport.published == []

    def test_256_characters_is_still_asked(self, client: FlaskClient,
                                           transport: FakeTransport) -> None:
        response = client.get(AGENTS, headers={"X-API-Key": "k" * 256})
        assert_envelope(response, 401, "authentication_failed")
        assert transport.count(AUTH_QUEUE) == 1

    @pytest.mark.parametrize("headers", [{}, {"X-API-Key": ""}])
    def test_missing_or_empty_key(self, client: FlaskClient, transport: FakeTransport,
                                  headers: dict[str, str]) -> None:
        assert_envelope(client.get(AGENTS, headers=headers), 401, "authentication_failed")
        assert transport.published == []


class TestQueryString:
    def test_longer_than_2048_bytes_is_400(self, client: FlaskClient,
                                           transport: FakeTransport) -> None:
        query = "agent_id=demo-agent-1&pad=" + "x" * (2049 - len("agent_id=demo-agent-1&pad="))
        assert len(query) == 2049
        for path in (NAMESPACES, AGENTS):
            body = assert_envelope(raw_query(client, path, query), 400, "invalid_request")
            assert body["message"].startswith("query string")
        assert transport.published == []  # refused before authentication

    def test_2048_bytes_is_accepted(self, client: FlaskClient) -> None:
        query = "agent_id=demo-agent-1&pad=" + "x" * (2048 - len("agent_id=demo-agent-1&pad="))
        assert raw_query(client, NAMESPACES, query).status_code == 200

    def test_length_counts_bytes_not_characters(self, client: FlaskClient) -> None:
        # 700 three-byte characters percent-encoded: 6300 bytes on the wire
        query = "agent_id=demo-agent-1&pad=" + "%E2%82%AC" * 700
        assert_envelope(raw_query(client, NAMESPACES, query), 400, "invalid_request")

    @pytest.mark.parametrize("query, field", [
        ("agent_id=a&agent_id=b", "agent_id"),
        ("agent_id=a&agent_id=a", "agent_id"),
        ("agent_id=demo-agent-1&cluster_id=1&cluster_id=2", "cluster_id"),
        ("agent_id=demo-agent-1&cluster_id=1&cluster_id=", "cluster_id"),
    ])
    def test_repeated_parameters_are_400_naming_the_field(
            self, client: FlaskClient, transport: FakeTransport, query: str, field: str) -> None:
        body = assert_envelope(raw_query(client, NAMESPACES, query), 400, "invalid_request")
        assert body["message"].startswith(f"{field}:")
        assert transport.count(NAMESPACE_QUEUE) == 0

    def test_unknown_parameters_are_ignored(self, client: FlaskClient) -> None:
        response = raw_query(client, NAMESPACES, "agent_id=demo-agent-1&x=1&x=2&y")
        assert response.status_code == 200


class TestAgentId:
    @pytest.mark.parametrize("value", [
        "%C3%A9",            # é, percent-encoded UTF-8
        "\xc3\xa9",          # é as raw UTF-8 bytes in the query
        "agent-%E2%80%8B1",  # zero-width space
        "%00",
        "a%00b",
        "a%0Ab",
        "a%0D%0AX-Injected:1",
        "%2F..%2F..%2Fetc%2Fpasswd",
        "..%2F",
        "a%20b",
        "a+b",
        "%25",
        "%",
        "%zz",
        "%F0%9F%98%80",
        "a%FFb",             # percent-encoded invalid UTF-8
        "<script>",
        "'%3B--",
        "",
        "x" * 129,
    ])
    def test_junk_is_400_and_no_namespace_rpc(self, client: FlaskClient,
                                              transport: FakeTransport, value: str) -> None:
        body = assert_envelope(raw_query(client, NAMESPACES, f"agent_id={value}"), 400,
                               "invalid_request")
        assert body["message"].startswith("agent_id:")
        assert transport.count(NAMESPACE_QUEUE) == 0

    @pytest.mark.parametrize("value", ["a", "x" * 128, "demo-agent-1", "A.b_c:d-9"])
    def test_valid_ids_pass(self, client: FlaskClient, value: str) -> None:
        response = raw_query(client, NAMESPACES, f"agent_id={value}")
        assert response.status_code == 200
        assert response.get_json()["agent_id"] == value

    @pytest.mark.parametrize("path", [NAMESPACES, AGENTS])
    def test_raw_invalid_utf8_bytes_are_400(self, client: FlaskClient, path: str) -> None:
        # gunicorn refuses such request lines itself; under any other WSGI server
        # werkzeug's strict decoding would otherwise be a 500
        body = assert_envelope(raw_query(client, path, "agent_id=a&x=\xff\xfe"), 400,
                               "invalid_request")
        assert body["message"].startswith("query string")


class TestNoInternalsInResponses:
    def test_unexpected_error_with_debug_true_is_a_bare_500(
            self, make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
        app = make_app(DEBUG="true", LOG_LEVEL="DEBUG")
        secret = "internal-detail-0xDEADBEEF /srv/app/secret.py"

        def explode(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError(secret)

        with app.app_context():
            monkeypatch.setattr(services().clusters, "run_shared", explode)
        response = app.test_client().get(f"{NAMESPACES}?agent_id=demo-agent-1",
                                         headers={"X-API-Key": API_KEY})
        body = assert_envelope(response, 500, "internal_error")
        assert body["message"] == "Internal server error"
        text = response.get_data(as_text=True)
        assert secret not in text and "0xDEADBEEF" not in text
        assert not any(marker in text for marker in LEAK_MARKERS), text

    @pytest.mark.parametrize("method, path, status, error", [
        ("GET", f"{BASE}/nope", 404, "not_found"),
        ("GET", "/", 404, "not_found"),
        ("POST", AGENTS, 405, "method_not_allowed"),
        ("DELETE", f"{BASE}/health", 405, "method_not_allowed"),
    ])
    def test_routing_errors_use_the_envelope_with_debug_true(
            self, make_app: Callable[..., Flask], method: str, path: str, status: int,
            error: str) -> None:
        client = make_app(DEBUG="true", LOG_LEVEL="DEBUG").test_client()
        response = client.open(path, method=method, headers={"X-API-Key": API_KEY})
        assert_envelope(response, status, error)
        assert API_KEY not in response.get_data(as_text=True)


# --- property-based ---------------------------------------------------------------

SECRET_KEYS = ("hypo-secret-key-7f3a9c", "k" * 256, API_KEY)
PATHS = (f"{BASE}/namespaces", f"{BASE}/namespaces", f"{BASE}/namespaces",
         f"{BASE}/agents/connected", f"{BASE}/health",
         f"{BASE}/ready", f"{BASE}/metrics", f"{BASE}/openapi.json", f"{BASE}/unknown",
         f"{BASE}/namespaces/", "/")
HEADER_NAMES = ("X-API-Key", "X-Request-ID", "X-Forwarded-For", "X-Forwarded-Proto",
                "X-Forwarded-Host", "X-Real-IP", "Accept", "Accept-Encoding", "Cookie",
                "Authorization", "Content-Type", "Origin", "Referer", "User-Agent")
# Any byte a WSGI header value can carry except CR and LF (the HTTP framing).
HEADER_VALUE = st.text(st.characters(min_codepoint=0, max_codepoint=255,
                                     blacklist_characters="\r\n"), max_size=300)
TOKEN = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=30)
QUERY_PIECE = st.one_of(
    st.text(max_size=60),  # any unicode; the client sends it UTF-8 encoded
    st.sampled_from(["agent_id", "cluster_id", "demo-agent-1", "%", "%00", "%ff", "%C3%A9",
                     "&", "=", ";", "+", "..%2F", "9223372036854775807",
                     "9223372036854775808", "-1", "1e3", "0x1f", " "]),
)
AGENT_AND_CLUSTER = st.tuples(QUERY_PIECE, QUERY_PIECE).map(
    lambda kv: f"agent_id={kv[0]}&cluster_id={kv[1]}")
QUERY = st.one_of(
    AGENT_AND_CLUSTER,
    AGENT_AND_CLUSTER,
    st.builds("agent_id={}".format, QUERY_PIECE),
    st.lists(st.tuples(QUERY_PIECE, QUERY_PIECE), max_size=6).map(
        lambda pairs: "&".join(f"{k}={v}" for k, v in pairs)),
    st.lists(QUERY_PIECE, max_size=12).map("".join),
    st.text(st.sampled_from("agent_id=cluster_id&%;+0123456789abcdefABCDEF-._:/ "),
            max_size=2600),
    st.binary(max_size=200).map(lambda raw: b"agent_id=demo-agent-1&" + raw),  # raw bytes
)
KEY = st.one_of(st.just(API_KEY), st.none(), st.sampled_from(SECRET_KEYS), HEADER_VALUE)
HEADERS = st.lists(st.tuples(st.one_of(st.sampled_from(HEADER_NAMES), TOKEN),
                             st.one_of(HEADER_VALUE, st.sampled_from(SECRET_KEYS))),
                   max_size=8)


class TestProperty:
    def test_no_500_and_every_error_is_the_envelope(self, transport: FakeTransport) -> None:
        from cluster_service import create_app
        from cluster_service.config import load_settings

        base = {"DEBUG": "true", "LOG_LEVEL": "DEBUG", "WEBSOCKET_TIMEOUT": "2",
                "AUTH_TIMEOUT": "2"}
        variants = [
            {"RATE_LIMIT_ENABLED": "false"},
            {"RATE_LIMIT_ENABLED": "true", "RATE_LIMIT_REQUESTS_PER_MINUTE": "5",
             "AUTH_FAILURES_PER_MINUTE": "3"},
            {"RATE_LIMIT_ENABLED": "true", "TRUSTED_PROXY_ADDRESSES": "127.0.0.1, ::1"},
        ]
        clients = []
        for variant in variants:
            own = FakeTransport()  # one transport per app: it holds that app's reply callback
            own.responders.update(transport.responders)
            clients.append(create_app(load_settings({**base, **variant}),
                                      transport=own).test_client())
        statuses: set[int] = set()

        @settings(max_examples=200, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(which=st.integers(0, len(clients) - 1), path=st.sampled_from(PATHS),
               method=st.sampled_from(["GET", "GET", "GET", "POST", "HEAD"]),
               query=QUERY, key=KEY, headers=HEADERS)
        def check(which: int, path: str, method: str, query: str | bytes, key: str | None,
                  headers: list[tuple[str, str]]) -> None:
            if key is not None:
                headers = [("X-API-Key", key), *headers]
            response = clients[which].open(path, method=method, headers=headers,
                                           environ_overrides={"QUERY_STRING": _wsgi(query)})
            statuses.add(response.status_code)
            assert response.status_code < 500, (response.status_code, response.data[:300])
            assert response.headers.get("X-Request-ID")
            text = response.get_data(as_text=True)
            sent_as_key = {v for n, v in headers if n.lower() == "x-api-key"}
            echoable = {v for n, v in headers if n.lower() != "x-api-key"}
            for key in (sent_as_key & set(SECRET_KEYS[:2])) - echoable:
                assert key not in text and all(key not in v for v in response.headers.values())
            if method == "HEAD":
                return
            if response.status_code >= 400:
                body = response.get_json()
                assert isinstance(body, dict) and set(body) == ENVELOPE, text[:300]
                assert body["success"] is False
                assert body["request_id"] == response.headers["X-Request-ID"]
                assert not any(marker in text for marker in LEAK_MARKERS[:3]), text[:300]

        check()
        # the run covered successes and the main refusals
        assert {200, 400, 401}.issubset(statuses), statuses


def _wsgi(query: str | bytes) -> str:
    """A query string as WSGI carries it: bytes (text as UTF-8), one str character per byte."""
    raw = query if isinstance(query, bytes) else query.encode("utf-8")
    return raw.decode("latin-1")


# --- the real gunicorn's own limits ----------------------------------------------

def _raw_request(port: int, head: bytes, timeout: float = 10.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.gunicorn
def _assert_envelope(reply: bytes, status: int, error: str | None = None) -> None:
    """A raw response carries the contract's JSON error envelope (never gunicorn's HTML)."""
    head, _, body = reply.partition(b"\r\n\r\n")
    assert int(head.split(b" ", 2)[1]) == status, reply[:300]
    assert b"content-type: application/json" in head.lower(), reply[:300]
    data = json.loads(body)
    assert list(data) == ["success", "error", "message", "request_id", "timestamp"], data
    if error is not None:
        assert data["error"] == error


class TestGunicornLimits:
    def test_oversized_headers_get_a_4xx_from_gunicorn_never_a_500(
            self, service_factory: Callable[..., ServiceProcess]) -> None:
        service = service_factory(ready=False, WEB_CONCURRENCY="1", GUNICORN_THREADS="2")
        target = b"/api/v3.0/cluster/agents/connected"
        end = b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
        cases = {
            "one 10 KB header": b"X-Big: " + b"a" * 10240 + b"\r\n",
            "60 headers": b"".join(b"X-H%d: v\r\n" % i for i in range(60)),
            "10 KB API key": b"X-API-Key: " + b"k" * 10240 + b"\r\n",
        }
        for name, extra in cases.items():
            reply = _raw_request(service.port, b"GET " + target + b" HTTP/1.1\r\n" + extra + end)
            status = int(reply.split(b" ", 2)[1])
            assert status in (400, 431), (name, reply[:300])
            _assert_envelope(reply, status)
        long_line = b"GET " + target + b"?agent_id=" + b"a" * 5000 + b" HTTP/1.1\r\n" + end
        reply = _raw_request(service.port, long_line)
        assert int(reply.split(b" ", 2)[1]) == 414, reply[:300]
        _assert_envelope(reply, 414, "uri_too_long")
        reply = _raw_request(service.port, b"GET " + target + b" HTTP/1.1\r\nBad Header\r\n"
                             + b"X-Request-ID: mine-1\r\n" + end)
        _assert_envelope(reply, 400, "invalid_request")
        # the worker is unharmed and nothing was a 500
        assert service.get("/health", timeout=5).status_code == 200
        logs = service.logs()
        assert '"status": 500' not in logs and "Traceback" not in logs, logs[-2000:]
