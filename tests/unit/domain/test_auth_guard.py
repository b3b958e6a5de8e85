"""Brute-force defence: failed authentications per client address, the negative cache,
and which address counts (TRUSTED_PROXY_ADDRESSES, address normalisation).

Flask test client over the FakeTransport (auth accepts only ``demo-key``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from cluster_service.domain.auth_guard import AuthFailureGuard
from cluster_service.config import load_settings

from ...conftest import API_KEY, BASE
from ...support.fake_transport import FakeTransport
from ...support.rate_window import fresh_window
from ...support.service import free_port, wait_for

AGENTS = f"{BASE}/agents/connected"
AUTH_QUEUE = "cluster_auth_requests"
ENVELOPE = {"success", "error", "message", "request_id", "timestamp"}


@pytest.fixture(autouse=True)
def _one_window() -> None:
    """Each test's counted failures fall within one limiter window (see rate_window.py)."""
    fresh_window(3)


def guarded(make_app: Callable[..., Flask], failures: int = 3, **env: str) -> FlaskClient:
    return make_app(RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS_PER_MINUTE="1000",
                    AUTH_FAILURES_PER_MINUTE=str(failures), **env).test_client()


def bad_key() -> str:
    return f"wrong-{uuid.uuid4().hex}"


def get(client: FlaskClient, key: str | None, addr: str = "127.0.0.1",
        **headers: str) -> TestResponse:
    sent = dict(headers)
    if key is not None:
        sent["X-API-Key"] = key
    return client.get(AGENTS, headers=sent, environ_base={"REMOTE_ADDR": addr})


def assert_blocked(response: TestResponse) -> None:
    assert response.status_code == 429, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == ENVELOPE
    assert body["error"] == "rate_limit_exceeded"
    assert body["message"] == "Rate limit exceeded"
    assert 1 <= int(response.headers["Retry-After"]) <= 61


class TestFailuresPerClient:
    def test_past_the_limit_429_before_asking_the_user_service(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        client = guarded(make_app, failures=3)
        for _ in range(3):  # rotating random keys: each one would be a fresh guess
            assert get(client, bad_key()).status_code == 401
        assert transport.count(AUTH_QUEUE) == 3
        for key in (bad_key(), bad_key(), API_KEY):  # even a valid, uncached key waits
            assert_blocked(get(client, key))
        assert transport.count(AUTH_QUEUE) == 3  # no auth RPC published past the limit

    def test_default_is_10_failures(self, make_app: Callable[..., Flask],
                                    transport: FakeTransport) -> None:
        client = make_app(RATE_LIMIT_ENABLED="true").test_client()
        assert [get(client, bad_key()).status_code for _ in range(10)] == [401] * 10
        assert_blocked(get(client, bad_key()))
        assert transport.count(AUTH_QUEUE) == 10

    def test_malformed_keys_count_as_failures_missing_keys_do_not(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        client = guarded(make_app, failures=2)
        for _ in range(5):  # no key: a misconfigured client, always 401, never blocked
            assert get(client, None).status_code == 401
            assert get(client, "").status_code == 401
        assert get(client, "x" * 257).status_code == 401
        assert get(client, "bad\tkey").status_code == 401
        assert_blocked(get(client, bad_key()))
        assert transport.count(AUTH_QUEUE) == 0

    def test_a_cached_valid_key_is_still_served_from_a_blocked_address(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        client = guarded(make_app, failures=2)
        assert get(client, API_KEY).status_code == 200  # cached now
        for _ in range(2):
            assert get(client, bad_key()).status_code == 401
        assert_blocked(get(client, bad_key()))
        assert get(client, API_KEY).status_code == 200

    def test_counted_per_client_address(self, make_app: Callable[..., Flask],
                                        transport: FakeTransport) -> None:
        client = guarded(make_app, failures=2)
        for _ in range(2):
            assert get(client, bad_key(), addr="127.0.2.10").status_code == 401
        assert_blocked(get(client, bad_key(), addr="127.0.2.10"))
        assert get(client, bad_key(), addr="127.0.2.11").status_code == 401
        assert get(client, API_KEY, addr="127.0.2.11").status_code == 200

    def test_successes_do_not_count(self, make_app: Callable[..., Flask]) -> None:
        client = guarded(make_app, failures=2, AUTH_CACHE_TTL="0")
        assert [get(client, API_KEY).status_code for _ in range(6)] == [200] * 6

    def test_disabled_with_rate_limiting(self, make_app: Callable[..., Flask],
                                         transport: FakeTransport) -> None:
        client = make_app(RATE_LIMIT_ENABLED="false",
                          AUTH_FAILURES_PER_MINUTE="1").test_client()
        assert [get(client, bad_key()).status_code for _ in range(4)] == [401] * 4
        assert transport.count(AUTH_QUEUE) == 4


class TestClientAddress:
    def test_without_trusted_proxies_x_forwarded_for_changes_nothing(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        client = guarded(make_app, failures=3)  # TRUSTED_PROXY_ADDRESSES defaults to empty
        for i in range(3):
            assert get(client, bad_key(), **{"X-Forwarded-For": f"198.51.100.{i}",
                                             "X-Real-IP": f"198.51.100.{i}"}).status_code == 401
        for i in range(3, 6):  # a fresh spoofed address each time: still blocked
            assert_blocked(get(client, bad_key(), **{"X-Forwarded-For": f"198.51.100.{i}"}))
        assert transport.count(AUTH_QUEUE) == 3

    def test_a_trusted_proxy_address_makes_its_appended_hop_the_client(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        client = guarded(make_app, failures=2, TRUSTED_PROXY_ADDRESSES="127.0.10.1")
        # The proxy (REMOTE_ADDR 127.0.10.1) appends the real client; whatever the
        # client wrote before it is ignored.
        for spoofed in ("127.0.113.1", "127.0.113.2"):
            response = get(client, bad_key(), addr="127.0.10.1",
                           **{"X-Forwarded-For": f"{spoofed}, 127.0.2.50"})
            assert response.status_code == 401
        assert_blocked(get(client, bad_key(), addr="127.0.10.1",
                           **{"X-Forwarded-For": "127.0.113.3, 127.0.2.50"}))
        # another real client behind the same proxy has its own count
        assert get(client, bad_key(), addr="127.0.10.1",
                   **{"X-Forwarded-For": "127.0.2.51"}).status_code == 401

    def test_a_direct_client_cannot_choose_its_address(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        """The hop-count model trusted whoever reached gunicorn's port: not any more."""
        client = guarded(make_app, failures=3, TRUSTED_PROXY_ADDRESSES="127.0.10.0/24")
        for i in range(8):  # not from a trusted proxy: its X-Forwarded-For means nothing
            response = get(client, bad_key(), addr="127.0.2.9",
                           **{"X-Forwarded-For": f"127.0.113.{i}"})
            assert response.status_code == (401 if i < 3 else 429)
        assert transport.count(AUTH_QUEUE) == 3

    def test_a_hop_that_is_not_an_address_stops_at_the_trusted_proxy(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        client = guarded(make_app, failures=2, TRUSTED_PROXY_ADDRESSES="127.0.10.1")
        for junk in ("not-an-ip", "127.0.2.1:80", "", "127.0.2.1 127.0.2.2"):
            get(client, bad_key(), addr="127.0.10.1", **{"X-Forwarded-For": junk})
        assert transport.count(AUTH_QUEUE) == 2  # all four counted as the proxy itself

    def test_chained_trusted_proxies_are_skipped_right_to_left(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        client = guarded(make_app, failures=2,
                         TRUSTED_PROXY_ADDRESSES="127.0.10.1, 127.0.20.0/24")
        for spoofed in ("127.0.113.1", "127.0.113.2", "127.0.113.3"):
            get(client, bad_key(), addr="127.0.10.1",
                **{"X-Forwarded-For": f"{spoofed}, 127.0.2.60, 127.0.20.7"})
        assert transport.count(AUTH_QUEUE) == 2  # one client: 127.0.2.60

    @pytest.mark.parametrize("spellings", [
        ("127.0.2.70", "::ffff:127.0.2.70", "::ffff:7f00:246"),
        ("::1", "::2", "0:0:0:0:0:0:ffff:ffff"),  # one /64
    ], ids=["ipv4-mapped", "ipv6-64"])
    def test_one_client_under_several_spellings_shares_one_count(
            self, make_app: Callable[..., Flask], transport: FakeTransport,
            spellings: tuple[str, ...]) -> None:
        client = guarded(make_app, failures=2)
        statuses = [get(client, bad_key(), addr=addr).status_code for addr in spellings]
        assert statuses == [401, 401, 429]


class TestGuardRace:
    def test_a_concurrent_burst_of_guesses_cannot_overshoot_the_limit(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        """Old code checked before the RPC and counted after: 30 of 32 reached the User
        Service. Now each guess is counted before its RPC."""
        app = make_app(RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS_PER_MINUTE="1000",
                       AUTH_FAILURES_PER_MINUTE="5", MAX_INFLIGHT_RPCS="64")
        answer = transport.responders[AUTH_QUEUE]
        # Every auth reply takes 0.2 s, so the guesses overlap.
        transport.responders[AUTH_QUEUE] = lambda body: [
            (reply, 0.2) for reply, _ in answer(body) or []]
        barrier = threading.Barrier(32)

        def guess(_: int) -> int:
            client = app.test_client()
            barrier.wait(10)
            return get(client, bad_key()).status_code

        with ThreadPoolExecutor(32) as pool:
            statuses = list(pool.map(guess, range(32)))
        assert sorted(statuses) == [401] * 5 + [429] * 27
        assert transport.count(AUTH_QUEUE) == 5

    def test_a_burst_with_one_valid_uncached_key_is_one_guess_not_thirty(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        """Requests that join a lookup already in flight share its verdict: found by the
        slow-agents bench, where 200 clients with one key got 429s at start-up."""
        app = make_app(RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS_PER_MINUTE="1000",
                       AUTH_FAILURES_PER_MINUTE="5")
        answer = transport.responders[AUTH_QUEUE]
        transport.responders[AUTH_QUEUE] = lambda body: [
            (reply, 0.3) for reply, _ in answer(body) or []]
        barrier = threading.Barrier(30)

        def call(_: int) -> int:
            client = app.test_client()
            barrier.wait(10)
            return get(client, API_KEY).status_code

        with ThreadPoolExecutor(30) as pool:
            statuses = list(pool.map(call, range(30)))
        assert statuses == [200] * 30
        assert transport.count(AUTH_QUEUE) <= 2

    def test_a_success_gives_its_attempt_back(self, make_app: Callable[..., Flask],
                                              transport: FakeTransport) -> None:
        client = guarded(make_app, failures=2, AUTH_CACHE_TTL="0")
        for _ in range(5):
            assert get(client, API_KEY).status_code == 200
        assert [get(client, bad_key()).status_code for _ in range(3)] == [401, 401, 429]


class TestNegativeCache:
    def test_a_hammered_bad_key_costs_one_rpc(self, make_app: Callable[..., Flask],
                                              transport: FakeTransport) -> None:
        client = guarded(make_app, failures=1000, AUTH_NEGATIVE_CACHE_TTL="60")
        key = bad_key()
        assert [get(client, key).status_code for _ in range(20)] == [401] * 20
        assert transport.count(AUTH_QUEUE) == 1

    def test_the_rejection_expires(self, make_app: Callable[..., Flask],
                                   transport: FakeTransport) -> None:
        client = guarded(make_app, failures=1000, AUTH_NEGATIVE_CACHE_TTL="0.3")
        key = bad_key()
        assert get(client, key).status_code == 401
        assert get(client, key).status_code == 401
        assert transport.count(AUTH_QUEUE) == 1
        wait_for(lambda: get(client, key).status_code == 401
                 and transport.count(AUTH_QUEUE) == 2, timeout=5, interval=0.1,
                 what="a second RPC once the negative cache entry expired")

    def test_negative_cache_is_per_key_not_per_client(
            self, make_app: Callable[..., Flask], transport: FakeTransport) -> None:
        client = guarded(make_app, failures=1000, AUTH_NEGATIVE_CACHE_TTL="60")
        key = bad_key()
        for i in range(5):
            assert get(client, key, addr=f"192.0.2.{i}").status_code == 401
        assert get(client, API_KEY).status_code == 200
        assert transport.count(AUTH_QUEUE) == 2


class TestGuardStorage:
    def test_unreachable_storage_falls_back_to_process_memory_and_logs_once(
            self, caplog: pytest.LogCaptureFixture) -> None:
        dead = f"redis://127.0.0.1:{free_port()}/0"
        guard = AuthFailureGuard(load_settings({"RATE_LIMIT_STORAGE_URI": dead,
                                                "AUTH_FAILURES_PER_MINUTE": "2"}))
        with caplog.at_level(logging.INFO, logger="cluster_service.domain.auth_guard"):
            assert guard.retry_after("127.0.2.1") is None
            guard.record_failure("127.0.2.1")
            guard.record_failure("127.0.2.1")
            retry = guard.retry_after("127.0.2.1")
            assert guard.retry_after("127.0.2.2") is None
        assert retry is not None and 1 <= retry <= 61
        warnings = [r for r in caplog.records if getattr(r, "event", "") == "limiter_fallback"]
        assert len(warnings) == 1
