"""The one error envelope: 404, 405 and 500 look like every other error, and leak nothing."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from cluster_service import errors as exc
from cluster_service.api.contract import HTTP_ERRORS

from ..conftest import API_KEY, BASE

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ENVELOPE_KEYS = ["success", "error", "message", "request_id", "timestamp"]


def assert_envelope(response: TestResponse, status: int, error: str) -> dict[str, Any]:
    """The contract's error body, with the request id equal to the response header."""
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body: dict[str, Any] = response.get_json()
    assert list(body) == ENVELOPE_KEYS
    assert body["success"] is False
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert TIMESTAMP.match(body["timestamp"]), body["timestamp"]
    return body


@pytest.fixture
def failing_app(make_app: Callable[..., Flask]) -> Flask:
    """An app with test-only routes that raise what no handler expects."""
    app = make_app()

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret-text")

    @app.get("/boom-with-key")
    def boom_with_key() -> str:
        from flask import request

        raise KeyError(request.headers["X-API-Key"])

    return app


@pytest.mark.parametrize("path", [
    f"{BASE}/nope",
    f"{BASE}/health/extra",
    "/",
    "/api/v1.0/cluster/health",
    f"{BASE}/namespaces/../../../etc/passwd",
])
def test_unknown_route_is_not_found(client: FlaskClient, path: str) -> None:
    body = assert_envelope(client.get(path), 404, "not_found")
    assert "nope" not in body["message"] and "passwd" not in body["message"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_method_not_allowed(client: FlaskClient, method: str) -> None:
    response = client.open(f"{BASE}/health", method=method)
    assert_envelope(response, 405, "method_not_allowed")
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert "GET" in allowed and method not in allowed


def test_not_found_ignores_the_api_key(client: FlaskClient) -> None:
    response = client.get(f"{BASE}/nope", headers={"X-API-Key": API_KEY})
    assert_envelope(response, 404, "not_found")
    assert API_KEY.encode() not in response.data


def test_unhandled_exception_is_a_bare_internal_error(failing_app: Flask) -> None:
    response = failing_app.test_client().get("/boom")
    body = assert_envelope(response, 500, "internal_error")
    assert body["message"] == "Internal server error"
    for leak in (b"secret-text", b"RuntimeError", b"Traceback", b"boom"):
        assert leak not in response.data


def test_unhandled_exception_never_echoes_the_api_key(failing_app: Flask) -> None:
    key = "very-secret-api-key-123"
    response = failing_app.test_client().get("/boom-with-key", headers={"X-API-Key": key})
    assert_envelope(response, 500, "internal_error")
    assert key.encode() not in response.data


def test_unhandled_exception_is_logged_without_its_text(
        failing_app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        failing_app.test_client().get("/boom")
    assert caplog.records, "an unhandled error must be logged"
    assert "secret-text" not in caplog.text


def test_each_error_gets_its_own_request_id(client: FlaskClient) -> None:
    first = client.get(f"{BASE}/nope").get_json()["request_id"]
    second = client.get(f"{BASE}/nope").get_json()["request_id"]
    assert first != second


def test_client_request_id_appears_in_the_envelope(failing_app: Flask) -> None:
    client = failing_app.test_client()
    for path, status in (("/boom", 500), (f"{BASE}/nope", 404)):
        response = client.get(path, headers={"X-Request-ID": "trace-42"})
        assert response.status_code == status
        assert response.get_json()["request_id"] == "trace-42"
        assert response.headers["X-Request-ID"] == "trace-42"


README = Path(__file__).resolve().parents[2] / "README.md"
ROW = re.compile(r"^\| (\d{3}) \| (`[a-z_]+`(?: / `[a-z_]+`)*) \|", re.M)


def readme_error_table() -> set[tuple[int, str]]:
    return {(int(status), code.strip("` "))
            for status, codes in ROW.findall(README.read_text()) for code in codes.split("/")}


def test_readme_error_table_matches_the_errors_themselves() -> None:
    """Each domain error carries its status and code; the README's table says the same."""
    domain = {(kind.http_status, kind.error_code) for kind in exc.all_errors()}
    routing = {(status, code) for status, (code, _) in HTTP_ERRORS.items()}
    table = readme_error_table()
    assert domain <= table, domain - table
    assert table <= domain | routing, table - domain - routing


def test_every_domain_error_names_a_status_and_a_code() -> None:
    for kind in exc.all_errors():
        assert 400 <= kind.http_status < 600 and re.fullmatch(r"[a-z_]+", kind.error_code), kind
