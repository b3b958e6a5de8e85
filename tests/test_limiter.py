"""Per-API-key rate limit (Flask-Limiter) on the cluster endpoints.

Flask test client over the FakeTransport; the limiter uses ``memory://`` here.
The shared-Redis behaviour with several gunicorn workers is in
``tests/integration/test_rate_limit_redis.py``.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from cluster_service.domain.auth_guard import AuthFailureGuard
from cluster_service.api.limiter import EXTENSION, api_key_identity

from .conftest import API_KEY, BASE
from .support.fake_transport import FakeTransport
from .support.rate_window import fresh_window

NAMESPACES = f"{BASE}/namespaces?agent_id=demo-agent-1"
AGENTS = f"{BASE}/agents/connected"
UNLIMITED = ("/health", "/ready", "/metrics", "/openapi.json")
ENVELOPE = {"success", "error", "message", "request_id", "timestamp"}
LIMIT_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


@pytest.fixture(autouse=True)
def _one_window() -> None:
    """Each test's counted requests run within one limiter window (see rate_window.py)."""
    fresh_window(3)


def limited_app(make_app: Callable[..., Flask], limit: int = 3, **env: str) -> FlaskClient:
    return make_app(RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS_PER_MINUTE=str(limit),
                    **env).test_client()


def get(client: FlaskClient, url: str, key: str | None = API_KEY) -> TestResponse:
    return client.get(url, headers={"X-API-Key": key} if key is not None else {})


def assert_rate_limited(response: TestResponse, limit: int) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == ENVELOPE
    assert body["success"] is False
    assert body["error"] == "rate_limit_exceeded"
    assert body["message"] == "Rate limit exceeded"
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", body["timestamp"])
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 61
    assert response.headers["X-RateLimit-Limit"] == str(limit)
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())


class TestPerKeyLimit:
    @pytest.mark.parametrize("url", [NAMESPACES, AGENTS])
    def test_exactly_the_limit_succeeds_then_429_with_envelope_and_headers(
            self, make_app: Callable[..., Flask], url: str) -> None:
        client = limited_app(make_app, limit=3)
        for remaining in (2, 1, 0):
            response = get(client, url)
            assert response.status_code == 200
            assert response.headers["X-RateLimit-Limit"] == "3"
            assert response.headers["X-RateLimit-Remaining"] == str(remaining)
            assert int(response.headers["X-RateLimit-Reset"]) >= int(time.time())
            assert "Retry-After" not in response.headers
        for _ in range(2):
            assert_rate_limited(get(client, url), limit=3)

    def test_default_is_60_per_minute(self, make_app: Callable[..., Flask]) -> None:
        client = make_app(RATE_LIMIT_ENABLED="true").test_client()
        statuses = [get(client, AGENTS).status_code for _ in range(60)]
        assert statuses == [200] * 60
        assert_rate_limited(get(client, AGENTS), limit=60)

    def test_one_budget_per_key_across_the_cluster_endpoints(
            self, make_app: Callable[..., Flask]) -> None:
        client = limited_app(make_app, limit=4)
        assert [get(client, NAMESPACES).status_code for _ in range(2)] == [200, 200]
        assert [get(client, AGENTS).status_code for _ in range(2)] == [200, 200]
        assert_rate_limited(get(client, NAMESPACES), limit=4)
        assert_rate_limited(get(client, AGENTS), limit=4)

    def test_each_key_has_its_own_budget(self, make_app: Callable[..., Flask],
                                         transport: FakeTransport) -> None:
        client = limited_app(make_app, limit=2, AUTH_FAILURES_PER_MINUTE="100")
        for _ in range(2):
            assert get(client, AGENTS).status_code == 200
        assert_rate_limited(get(client, AGENTS), limit=2)
        other = get(client, AGENTS, key="another-key")
        assert other.status_code == 401  # not limited by the first key's budget
        assert "X-RateLimit-Remaining" not in other.headers  # nor given one of its own

    def test_a_refused_request_costs_no_rpc(self, make_app: Callable[..., Flask],
                                            transport: FakeTransport) -> None:
        client = limited_app(make_app, limit=1)  # the key is cached once authenticated
        assert get(client, NAMESPACES).status_code == 200
        before = len(transport.published)
        for _ in range(3):
            assert get(client, NAMESPACES).status_code == 429
        assert len(transport.published) == before

    def test_without_the_auth_cache_a_refused_request_costs_only_its_auth(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        """The limit is checked after authentication: never a cluster RPC past it."""
        client = limited_app(make_app, limit=1, AUTH_CACHE_TTL="0")
        assert get(client, NAMESPACES).status_code == 200
        for _ in range(3):
            assert get(client, NAMESPACES).status_code == 429
        assert transport.count("cluster_namespace_requests") == 1
        assert transport.count("cluster_auth_requests") == 4

    def test_unauthenticated_requests_leave_no_limiter_state(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        """The old limiter kept an entry per key string tried, before authentication:
        20,000 bad keys grew a worker by 8 MB. Now only authenticated keys get one;
        unauthenticated traffic is bounded by the per-client guard."""
        app = make_app(RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS_PER_MINUTE="2",
                       AUTH_FAILURES_PER_MINUTE="5")
        client = app.test_client()
        statuses = [get(client, AGENTS, key=f"guess-{i}").status_code for i in range(300)]
        statuses += [get(client, AGENTS, key=None).status_code for _ in range(5)]
        assert statuses == [401] * 5 + [429] * 300  # the blocked client, keyless too
        storage = app.extensions[EXTENSION].storage
        assert list(storage.storage) == [] and list(storage.events) == []
        assert transport.count("cluster_auth_requests") == 5
        other_client = [client.get(AGENTS, headers={"X-API-Key": API_KEY},
                                   environ_base={"REMOTE_ADDR": "127.0.2.9"}).status_code
                        for _ in range(3)]
        assert other_client == [200, 200, 429]
        assert len(storage.storage) > 0

    def test_disabled_means_no_limit_and_no_headers(self, make_app: Callable[..., Flask]) -> None:
        client = make_app(RATE_LIMIT_ENABLED="false", RATE_LIMIT_REQUESTS_PER_MINUTE="1",
                          AUTH_FAILURES_PER_MINUTE="1").test_client()
        for _ in range(5):
            response = get(client, AGENTS)
            assert response.status_code == 200
            assert not any(name in response.headers for name in LIMIT_HEADERS)
        # the brute-force guard is off too
        assert [get(client, AGENTS, key=f"bad-{i}").status_code for i in range(5)] == [401] * 5


class TestRetryAfter:
    """Flask-Limiter sets Retry-After on every limited response; only its own 429 keeps it."""

    def test_a_503_keeps_the_services_retry_after(self, make_app: Callable[..., Flask],
                                                  transport: FakeTransport) -> None:
        transport.responders["cluster_auth_requests"] = lambda body: [
            ({"request_id": body["request_id"], "error": "Authentication error: db down"}, 0)]
        client = limited_app(make_app, limit=5)
        response = get(client, AGENTS, key="uncached-key")
        assert response.status_code == 503
        assert response.headers.getlist("Retry-After") == ["5"]
        assert "X-RateLimit-Limit" not in response.headers  # never authenticated: no budget

    def test_the_brute_force_429_keeps_the_guards_retry_after(
            self, make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(AuthFailureGuard, "admit", lambda self, client: 17)
        client = limited_app(make_app, limit=5)
        response = get(client, AGENTS, key="any-key")
        assert response.status_code == 429
        assert response.headers.getlist("Retry-After") == ["17"]

    @pytest.mark.parametrize("key, status", [(API_KEY, 200), ("wrong-key", 401), (None, 401)])
    def test_other_responses_carry_none(self, make_app: Callable[..., Flask], key: str | None,
                                        status: int) -> None:
        response = get(limited_app(make_app, limit=5), AGENTS, key=key)
        assert response.status_code == status
        assert "Retry-After" not in response.headers
        if status == 200:  # only an authenticated key has a budget to report
            assert response.headers["X-RateLimit-Remaining"] == "4"
        else:
            assert not any(name in response.headers for name in LIMIT_HEADERS)


class TestUnlimitedEndpoints:
    @pytest.mark.parametrize("path", UNLIMITED)
    def test_probes_and_metrics_are_never_limited(self, make_app: Callable[..., Flask],
                                                  path: str) -> None:
        client = limited_app(make_app, limit=1, AUTH_FAILURES_PER_MINUTE="1")
        assert get(client, AGENTS).status_code == 200
        assert get(client, AGENTS).status_code == 429
        for _ in range(5):
            response = get(client, BASE + path)
            assert response.status_code == 200, (path, response.get_data(as_text=True))
            assert not any(name in response.headers for name in LIMIT_HEADERS)
            assert "Retry-After" not in response.headers


class TestKeyNeverRaw:
    def test_limiter_identity_is_the_sha256(self, make_app: Callable[..., Flask]) -> None:
        app = make_app(RATE_LIMIT_ENABLED="true")
        with app.test_request_context(AGENTS, headers={"X-API-Key": "s3cr3t-key"}):
            identity = api_key_identity()
        assert identity == "key:" + hashlib.sha256(b"s3cr3t-key").hexdigest()
        with app.test_request_context(AGENTS, environ_base={"REMOTE_ADDR": "127.0.2.1"}):
            assert api_key_identity() == "addr:127.0.2.1"

    def test_storage_holds_only_the_fingerprint(self, make_app: Callable[..., Flask]) -> None:
        app = make_app(RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS_PER_MINUTE="5")
        client = app.test_client()
        secret = "raw-key-that-must-not-be-stored-4711"
        get(client, AGENTS, key=secret)
        get(client, AGENTS)
        storage = app.extensions[EXTENSION].storage
        keys = list(storage.events) + list(storage.storage)
        assert keys, "the limiter stored nothing"
        assert not any(secret in key or API_KEY in key for key in keys), keys
        assert any(hashlib.sha256(API_KEY.encode()).hexdigest() in key for key in keys), keys
        # the rejected key is not stored at all, not even hashed
        assert not any(hashlib.sha256(secret.encode()).hexdigest() in key for key in keys), keys


class TestHooksOnlyWhereLimited:
    """Flask-Limiter's request hooks run for the limited blueprints only; its own
    before-request check not at all (the trampoline checks, after auth)."""

    @staticmethod
    def limiter_hooks(app: Flask, hooks: dict) -> dict:
        limiter = app.extensions[EXTENSION]

        def owned(hook: object) -> bool:
            bound = getattr(hook, "__self__", None) or getattr(hook, "args", [None])[0]
            return bound is limiter

        return {name: [h for h in funcs if owned(h)] for name, funcs in hooks.items()}

    def test_probes_run_no_limiter_hook(self, make_app: Callable[..., Flask]) -> None:
        app = make_app(RATE_LIMIT_ENABLED="true")
        for hooks in (app.before_request_funcs, app.after_request_funcs,
                      app.teardown_request_funcs):
            assert not self.limiter_hooks(app, hooks).get(None)
        assert not any(self.limiter_hooks(app, app.before_request_funcs).values())
        for name in ("operations", "agents"):
            assert len(self.limiter_hooks(app, app.after_request_funcs)[name]) == 1
            assert len(self.limiter_hooks(app, app.teardown_request_funcs)[name]) == 1

    def test_limited_responses_keep_their_headers(self, make_app: Callable[..., Flask]) -> None:
        client = limited_app(make_app, limit=2)
        first = get(client, NAMESPACES)
        assert first.status_code == 200
        assert [first.headers[h] for h in LIMIT_HEADERS][:2] == ["2", "1"]
        assert "Retry-After" not in first.headers
        get(client, AGENTS)
        assert_rate_limited(get(client, NAMESPACES), 2)
        for path in UNLIMITED:
            response = client.get(BASE + path)
            assert not any(h in response.headers for h in LIMIT_HEADERS), path
