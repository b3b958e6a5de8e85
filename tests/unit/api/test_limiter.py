"""Per-API-key rate limit (Flask-Limiter) on the cluster endpoints.

Flask test client over the FakeTransport; the limiter uses ``memory://`` here.
The shared-Redis behaviour with several gunicorn workers is in
``tests/integration/test_rate_limit_redis.py``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from typing import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

import limits
from flask_limiter import Limiter
from flask_limiter._manager import LimitManager

from cluster_service.domain.auth_guard import AuthFailureGuard
from cluster_service.api.limiter import (EXTENSION, FALLBACK_MESSAGE, RECOVERED_MESSAGE,
                                         STRATEGY, api_key_identity)

from ...conftest import API_KEY, BASE
from ...support.fake_transport import FakeTransport
from ...support.rate_window import fresh_window

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


class TestFlaskLimitersBehaviour:
    """The per-key limit answers as Flask-Limiter's ``shared_limit`` does on a route, with
    the limit parsed once at start and none of Flask-Limiter's request hooks."""

    @staticmethod
    def reference(limit: int) -> tuple[FlaskClient, Limiter]:
        """Flask-Limiter on a plain app, configured as the service configures it."""
        app = Flask("reference")
        limiter = Limiter(lambda: "key:" + hashlib.sha256(API_KEY.encode()).hexdigest(),
                          app=app, storage_uri="memory://", strategy=STRATEGY,
                          headers_enabled=True, retry_after="delta-seconds",
                          in_memory_fallback_enabled=True, swallow_errors=True,
                          key_prefix="cluster_service")

        @app.get("/limited")
        @limiter.shared_limit(f"{limit}/minute", scope="cluster")
        def limited() -> str:
            return "ok"

        return app.test_client(), limiter

    @staticmethod
    def headers(response: TestResponse) -> dict[str, int]:
        return {name: int(response.headers[name])
                for name in (*LIMIT_HEADERS, "Retry-After") if name in response.headers}

    def test_statuses_headers_and_storage_keys_match_flask_limiter(
            self, make_app: Callable[..., Flask]) -> None:
        reference, reference_limiter = self.reference(limit=3)
        app = make_app(RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS_PER_MINUTE="3")
        client = app.test_client()
        for _ in range(5):
            expected, got = reference.get("/limited"), get(client, AGENTS)
            assert (got.status_code == 200) == (expected.status_code == 200)
            assert got.status_code in (200, 429)
            want, have = self.headers(expected), self.headers(got)
            if expected.status_code == 200:
                # Flask-Limiter's Retry-After on every response of a limited route; the
                # service's only on its 429 (TestRetryAfter).
                del want["Retry-After"]
            assert set(have) == set(want)
            for name, value in want.items():  # the clock may tick between the two
                assert abs(have[name] - value) <= 1, (name, have, want)
        storage = app.extensions[EXTENSION].storage
        assert set(storage.storage) == set(reference_limiter.storage.storage)  # type: ignore
        assert storage.storage and all(key.startswith("LIMITER/cluster_service/key:")
                                       for key in storage.storage)

    def test_no_flask_limiter_hook_runs(self, make_app: Callable[..., Flask]) -> None:
        app = make_app(RATE_LIMIT_ENABLED="true")
        limiter = app.extensions[EXTENSION]
        for hooks in (app.before_request_funcs, app.after_request_funcs,
                      app.teardown_request_funcs):
            for funcs in hooks.values():
                for hook in funcs:
                    bound = getattr(hook, "__self__", None) or next(
                        iter(getattr(hook, "args", ()) or ()), None)
                    assert bound is not limiter, hook

    def test_the_limit_is_parsed_once_at_start(self, make_app: Callable[..., Flask],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        client = limited_app(make_app, limit=2)

        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("a limit resolved or parsed per request")

        monkeypatch.setattr(LimitManager, "resolve_limits", refuse)
        monkeypatch.setattr(limits, "parse", refuse)
        monkeypatch.setattr(limits, "parse_many", refuse)
        assert [get(client, NAMESPACES).status_code for _ in range(3)] == [200, 200, 429]

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


class TestStorageOutage:
    """Flask-Limiter's in-memory fallback: logged once, requests served on process limits,
    back on the storage once it answers a check."""

    def test_falls_back_once_and_recovers(self, make_app: Callable[..., Flask],
                                          monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger="flask-limiter")
        app = make_app(RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS_PER_MINUTE="3")
        client = app.test_client()
        key_limit = app.extensions["cluster_service"].key_limit
        storage = app.extensions[EXTENSION].storage
        assert get(client, AGENTS).status_code == 200

        def down(*args: object, **kwargs: object) -> None:
            raise ConnectionError("storage down")

        with monkeypatch.context() as outage:
            outage.setattr(key_limit._primary, "hit", down)
            outage.setattr(key_limit._primary, "get_window_stats", down)
            outage.setattr(storage, "check", lambda: False)
            statuses = [get(client, AGENTS) for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert [r.headers["X-RateLimit-Remaining"] for r in statuses[:3]] == ["2", "1", "0"]
        fallbacks = [r for r in caplog.records if r.getMessage() == FALLBACK_MESSAGE]
        assert len(fallbacks) == 1 and fallbacks[0].name == "flask-limiter"

        monkeypatch.setattr(key_limit, "_last_check", 0.0)  # the back-off has run out
        assert get(client, AGENTS).headers["X-RateLimit-Remaining"] == "1"  # the storage's count
        assert [r.getMessage() for r in caplog.records].count(RECOVERED_MESSAGE) == 1
