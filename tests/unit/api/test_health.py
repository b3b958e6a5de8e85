"""Liveness (/health) and readiness (/ready): no key, never rate limited, exact bodies."""

from __future__ import annotations

import re
from typing import Callable

from flask import Flask
from flask.testing import FlaskClient

from cluster_service import create_app
from cluster_service.config import load_settings

from ...conftest import API_KEY, BASE
from ...support.fake_transport import FakeTransport

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _app_over(transport: FakeTransport, **env: str) -> Flask:
    settings = load_settings({"DEBUG": "false", "RATE_LIMIT_ENABLED": "false", **env})
    return create_app(settings, transport=transport)


class TestHealth:
    def test_body_is_exactly_the_contract(self, client: FlaskClient) -> None:
        response = client.get(f"{BASE}/health")
        assert response.status_code == 200
        assert response.mimetype == "application/json"
        body = response.get_json()
        assert list(body) == ["status", "service", "timestamp", "version"]
        assert body["status"] == "healthy"
        assert body["service"] == "cluster_service"
        assert body["version"] == "1.0.0"
        assert TIMESTAMP.match(body["timestamp"]), body["timestamp"]

    def test_an_api_key_is_ignored_and_nothing_is_published(
            self, client: FlaskClient, transport: FakeTransport) -> None:
        for key in (API_KEY, "not-a-valid-key", "x" * 300):
            response = client.get(f"{BASE}/health", headers={"X-API-Key": key})
            assert response.status_code == 200
            assert response.get_json()["status"] == "healthy"
            assert key.encode() not in response.data
        assert transport.published == []

    def test_does_not_start_the_broker_connection(self, client: FlaskClient,
                                                  transport: FakeTransport) -> None:
        client.get(f"{BASE}/health")
        # FakeTransport.start records its callbacks; /health must never get that far.
        assert transport._on_change is None

    def test_healthy_while_the_broker_is_down(self) -> None:
        down = FakeTransport(connected=False)
        client = _app_over(down).test_client()
        assert client.get(f"{BASE}/ready").status_code == 503
        response = client.get(f"{BASE}/health")
        assert response.status_code == 200
        assert response.get_json()["status"] == "healthy"
        assert down.published == []

    def test_never_rate_limited(self, transport: FakeTransport) -> None:
        client = _app_over(transport, RATE_LIMIT_ENABLED="true",
                           RATE_LIMIT_REQUESTS_PER_MINUTE="1").test_client()
        statuses = [client.get(f"{BASE}/{path}").status_code
                    for path in ("health", "ready") for _ in range(4)]
        assert statuses == [200] * 8

    def test_request_body_on_get_is_ignored(self, client: FlaskClient) -> None:
        response = client.get(f"{BASE}/health", data="{not json",
                              content_type="application/json")
        assert response.status_code == 200


class TestReady:
    def test_ready_when_the_broker_connection_is_up(self, client: FlaskClient) -> None:
        response = client.get(f"{BASE}/ready")
        assert response.status_code == 200
        assert response.mimetype == "application/json"
        body = response.get_json()
        assert list(body) == ["status", "checks", "timestamp"]
        assert body["status"] == "ready"
        assert body["checks"] == {"rabbitmq": "ok"}
        assert TIMESTAMP.match(body["timestamp"]), body["timestamp"]

    def test_not_ready_when_the_broker_is_down(self) -> None:
        down = FakeTransport(connected=False)
        response = _app_over(down).test_client().get(f"{BASE}/ready")
        assert response.status_code == 503
        body = response.get_json()
        assert list(body) == ["status", "checks", "timestamp"]
        assert body["status"] == "not_ready"
        assert list(body["checks"]) == ["rabbitmq"]
        assert isinstance(body["checks"]["rabbitmq"], str)
        assert body["checks"]["rabbitmq"] not in ("", "ok")
        assert TIMESTAMP.match(body["timestamp"]), body["timestamp"]
        assert down.published == []

    def test_follows_the_connection_state(self, client: FlaskClient,
                                          transport: FakeTransport) -> None:
        assert client.get(f"{BASE}/ready").status_code == 200
        transport.set_connected(False)
        assert client.get(f"{BASE}/ready").get_json()["status"] == "not_ready"
        transport.set_connected(True)
        assert client.get(f"{BASE}/ready").status_code == 200

    def test_needs_no_key_and_publishes_nothing(self, client: FlaskClient,
                                                transport: FakeTransport) -> None:
        response = client.get(f"{BASE}/ready", headers={"X-API-Key": "wrong"})
        assert response.status_code == 200
        assert transport.published == []


def test_probes_are_registered_under_the_base_path(make_app: Callable[..., Flask]) -> None:
    rules = {rule.rule: rule.methods or set() for rule in make_app().url_map.iter_rules()}
    assert "GET" in rules[f"{BASE}/health"]
    assert "GET" in rules[f"{BASE}/ready"]
