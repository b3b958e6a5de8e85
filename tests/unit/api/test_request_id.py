"""X-Request-ID: a sane client id is echoed, anything else is replaced by a new uuid4."""

from __future__ import annotations

import uuid

import pytest
from flask.testing import FlaskClient

from cluster_service.observability.request_context import current_request_id
from cluster_service.api.request_id import choose_request_id

from ...conftest import BASE

HEALTH = f"{BASE}/health"


def is_uuid4(value: str) -> bool:
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        return False
    return parsed.version == 4 and str(parsed) == value


@pytest.mark.parametrize("sent", [
    "abc-123",
    "7f1c0c2e-6a4b-4c1e-9a43-1f0e3f0a9b11",
    "a",
    "x" * 128,
    "trace.id:1/2+3=4_5",
])
def test_sane_id_is_echoed(client: FlaskClient, sent: str) -> None:
    response = client.get(HEALTH, headers={"X-Request-ID": sent})
    assert response.headers["X-Request-ID"] == sent


def test_missing_id_gets_a_uuid4(client: FlaskClient) -> None:
    first = client.get(HEALTH).headers["X-Request-ID"]
    second = client.get(HEALTH).headers["X-Request-ID"]
    assert is_uuid4(first) and is_uuid4(second)
    assert first != second


@pytest.mark.parametrize("sent", [
    "",
    "x" * 129,
    "x" * 1000,
    "has space",
    " leading",
    "tab\there",
    "bell\x07id",
    "nul\x00id",
    "del\x7fid",
    "caf\u00e9",
    "quote\"id",
    "<script>",
], ids=lambda s: repr(s)[:30])
def test_insane_id_is_replaced(client: FlaskClient, sent: str) -> None:
    response = client.get(HEALTH, headers={"X-Request-ID": sent})
    echoed = response.headers["X-Request-ID"]
    assert echoed != sent
    assert is_uuid4(echoed), echoed


@pytest.mark.parametrize("sent", ["x" * 129, "bad id\x01", "line\r\nX-Injected: 1"])
def test_choose_request_id_replaces_insane_ids(sent: str) -> None:
    assert is_uuid4(choose_request_id(sent))


def test_choose_request_id_generates_when_absent() -> None:
    assert is_uuid4(choose_request_id(None))


@pytest.mark.parametrize("path, status", [(f"{BASE}/nope", 404), (HEALTH, 200)])
def test_every_response_carries_the_id(client: FlaskClient, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status
    assert is_uuid4(response.headers["X-Request-ID"])


def test_envelope_request_id_equals_the_header(client: FlaskClient) -> None:
    generated = client.get(f"{BASE}/nope")
    assert generated.get_json()["request_id"] == generated.headers["X-Request-ID"]
    replaced = client.get(f"{BASE}/nope", headers={"X-Request-ID": "x" * 200})
    assert replaced.get_json()["request_id"] == replaced.headers["X-Request-ID"]
    assert is_uuid4(replaced.headers["X-Request-ID"])
    echoed = client.post(HEALTH, headers={"X-Request-ID": "my-id"})
    assert echoed.status_code == 405
    assert echoed.get_json()["request_id"] == "my-id" == echoed.headers["X-Request-ID"]


def test_id_does_not_leak_out_of_the_request(client: FlaskClient) -> None:
    client.get(HEALTH, headers={"X-Request-ID": "leaky"})
    assert current_request_id() != "leaky"
