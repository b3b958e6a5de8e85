"""Auth events and revocation in one worker: parse, apply, never raise, never cache the past."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from cluster_service.domain.auth import Authenticator
from cluster_service.domain.auth_events import (FLUSH_EVERY_S, AuthEvent, AuthEventHandler,
                                                parse_event)
from cluster_service.errors import AuthenticationFailed
from cluster_service.domain.revocations import Revocations
from cluster_service.rpc.client import RpcClient

from ...conftest import API_KEY, BASE, VALID_USER
from ...support.fake_transport import FakeTransport
from ...support.recording import RecordingObserver
from .test_auth import AUTH_QUEUE, GOOD, AuthHarness


class TestParse:
    def test_user_revoked(self) -> None:
        assert parse_event(b'{"event": "user_revoked", "user_id": 7}') == AuthEvent(
            "user_revoked", 7)

    def test_cache_flush(self) -> None:
        assert parse_event(b'{"event": "cache_flush", "extra": 1}') == AuthEvent("cache_flush")

    @pytest.mark.parametrize("body", [
        b"", b"not json", b"[]", b'"user_revoked"', b"{}", b'{"event": "user_deleted"}',
        b'{"event": "user_revoked"}', b'{"event": "user_revoked", "user_id": "7"}',
        b'{"event": "user_revoked", "user_id": true}',
        b'{"event": "user_revoked", "user_id": -1}',
        b'{"event": "user_revoked", "user_id": 7.0}',
        b'{"event": "user_revoked", "user_id": 99999999999999999999}',
        b'{"event": "cache_flush", "at": NaN}',  # not JSON: one strict parser for every body
        b"[" * 100_000, b"\xff\xfe", b'{"event": "cache_flush", "pad": "' + b"x" * 5000 + b'"}',
    ])
    def test_anything_else_is_not_an_event(self, body: bytes) -> None:
        assert parse_event(body) is None

    def test_round_trip(self) -> None:
        for event in (AuthEvent("user_revoked", 42), AuthEvent("cache_flush")):
            assert parse_event(event.to_json()) == event


class TestRevocations:
    def test_a_validation_asked_before_the_revocation_is_void(self) -> None:
        now = [100.0]
        revocations = Revocations(30, clock=lambda: now[0])
        revocations.revoke(7)
        assert revocations.void(7, 99.0) and revocations.void(7, 100.0)
        assert not revocations.void(7, 100.5)
        assert not revocations.void(8, 99.0)

    def test_a_flush_voids_everyone_before_it(self) -> None:
        now = [100.0]
        revocations = Revocations(30, clock=lambda: now[0])
        revocations.flush()
        assert revocations.void(1, 99.0) and revocations.void(2, 100.0)
        assert not revocations.void(1, 101.0)

    def test_revocations_are_forgotten_after_the_horizon(self) -> None:
        now = [100.0]
        revocations = Revocations(30, clock=lambda: now[0])
        revocations.revoke(7)
        now[0] = 131.0
        revocations.revoke(8)  # prunes
        assert not revocations.void(7, 99.0)  # any entry that old has expired anyway
        assert revocations.void(8, 130.0)


class TestHandler:
    def test_revocation_drops_only_that_users_entries(self) -> None:
        h = AuthHarness()
        other = "other-key"
        h.transport.responders[AUTH_QUEUE] = lambda body: [({
            "request_id": body["request_id"], "valid": True,
            "user_data": VALID_USER if body["api_key"] == GOOD
            else dict(VALID_USER, id=8, username="bob")}, 0)]
        h.auth.authenticate(GOOD)
        h.auth.authenticate(other)
        assert h.rpcs == 2
        handler = AuthEventHandler(h.auth, h.observer)
        handler(AuthEvent("user_revoked", VALID_USER["id"]).to_json())
        h.auth.authenticate(GOOD)
        h.auth.authenticate(other)
        assert h.rpcs == 3  # user 7 asked again, user 8 still cached
        assert h.observer.events == {"user_revoked": 1}

    def test_revoked_user_that_the_peer_now_rejects_gets_401(self) -> None:
        h = AuthHarness()
        h.auth.authenticate(GOOD)
        h.transport.responders[AUTH_QUEUE] = lambda body: [(
            {"request_id": body["request_id"], "valid": False, "error": "Invalid API key"}, 0)]
        h.auth.authenticate(GOOD)  # still cached
        AuthEventHandler(h.auth)(b'{"event": "user_revoked", "user_id": 7}')
        with pytest.raises(AuthenticationFailed):
            h.auth.authenticate(GOOD)

    def test_flush_drops_valid_and_rejected_entries(self) -> None:
        h = AuthHarness()
        h.auth.authenticate(GOOD)
        with pytest.raises(AuthenticationFailed):
            h.auth.authenticate("bad-key")
        AuthEventHandler(h.auth, h.observer)(b'{"event": "cache_flush"}')
        h.auth.authenticate(GOOD)
        with pytest.raises(AuthenticationFailed):
            h.auth.authenticate("bad-key")
        assert h.rpcs == 4
        assert h.observer.events == {"cache_flush": 1}

    @pytest.mark.parametrize("body", [b"junk", b'{"event": "nope"}', b"[" * 100_000])
    def test_junk_is_counted_and_changes_nothing(self, body: bytes) -> None:
        h = AuthHarness()
        h.auth.authenticate(GOOD)
        AuthEventHandler(h.auth, h.observer)(body)  # does not raise
        h.auth.authenticate(GOOD)
        assert h.rpcs == 1
        assert h.observer.events == {"ignored": 1}

    def test_a_validation_in_flight_during_the_revocation_is_not_cached(self) -> None:
        """The RPC was asked before the revocation and answers after it: that answer
        serves the request that asked, but nobody may reuse it."""
        h = AuthHarness()
        answered = threading.Event()
        revoke_now = threading.Event()

        def slow_valid(body: dict[str, Any]) -> list[tuple[Any, float]]:
            revoke_now.set()
            answered.wait(5)
            return [({"request_id": body["request_id"], "valid": True,
                      "user_data": VALID_USER}, 0)]

        h.transport.responders[AUTH_QUEUE] = slow_valid
        first = threading.Thread(target=h.auth.authenticate, args=(GOOD,))
        first.start()
        assert revoke_now.wait(5)
        h.auth.revoke_user(VALID_USER["id"])
        answered.set()
        first.join(5)
        h.transport.responders[AUTH_QUEUE] = lambda body: [(
            {"request_id": body["request_id"], "valid": True, "user_data": VALID_USER}, 0)]
        h.auth.authenticate(GOOD)
        assert h.rpcs == 2


class CountingOwner:
    """A cache owner that counts what it was asked to do."""

    def __init__(self) -> None:
        self.flushes = 0
        self.revoked: list[int] = []
        self.flushed = threading.Event()

    def revoke_user(self, user_id: int) -> None:
        self.revoked.append(user_id)

    def flush(self) -> None:
        self.flushes += 1
        self.flushed.set()

    def forget_local(self) -> None:
        pass


class TestFlushFlood:
    """A cache_flush flood must not empty the caches continuously (one flush a second)."""

    def test_a_flood_within_a_second_is_one_flush_now_and_one_after(self) -> None:
        owner, observer, now = CountingOwner(), RecordingObserver(), [100.0]
        handler = AuthEventHandler(owner, observer, clock=lambda: now[0])
        for _ in range(1000):
            handler(b'{"event": "cache_flush"}')
        assert owner.flushes == 1
        assert observer.events["cache_flush"] == 1
        assert observer.events["throttled"] == 999
        owner.flushed.clear()
        now[0] += FLUSH_EVERY_S
        assert owner.flushed.wait(3), "the throttled flushes were folded into none"
        assert owner.flushes == 2

    def test_a_flush_made_when_due_replaces_the_deferred_one(self) -> None:
        owner, now = CountingOwner(), [100.0]
        handler = AuthEventHandler(owner, clock=lambda: now[0])
        handler(b'{"event": "cache_flush"}')
        now[0] += 0.9
        handler(b'{"event": "cache_flush"}')  # throttled: one deferred for ~0.1 s
        now[0] += 0.1
        handler(b'{"event": "cache_flush"}')  # due: applied now, the deferred one dropped
        assert owner.flushes == 2
        owner.flushed.clear()
        assert not owner.flushed.wait(0.5)
        assert owner.flushes == 2

    def test_flushes_a_second_apart_are_each_applied(self) -> None:
        owner, now = CountingOwner(), [100.0]
        handler = AuthEventHandler(owner, clock=lambda: now[0])
        for _ in range(3):
            handler(b'{"event": "cache_flush"}')
            now[0] += FLUSH_EVERY_S
        assert owner.flushes == 3

    def test_revocations_are_never_throttled(self) -> None:
        owner = CountingOwner()
        handler = AuthEventHandler(owner)
        for user_id in range(50):
            handler(json.dumps({"event": "user_revoked", "user_id": user_id}).encode())
        assert owner.revoked == list(range(50))

    def test_a_foreign_delivery_is_counted(self) -> None:
        observer = RecordingObserver()
        AuthEventHandler(CountingOwner(), observer).foreign()
        assert observer.events["wrong_exchange"] == 1


class TestOverTheTransport:
    def test_the_app_listens_on_the_auth_events_exchange(self, make_app: Any,
                                                         transport: FakeTransport) -> None:
        app = make_app(AUTH_EVENTS_EXCHANGE="x.events")
        client = app.test_client()
        url = f"{BASE}/namespaces?agent_id=a1"
        assert client.get(url, headers={"X-API-Key": API_KEY}).status_code == 200
        assert client.get(url, headers={"X-API-Key": API_KEY}).status_code == 200
        assert transport.count("cluster_auth_requests") == 1
        transport.emit("x.events", json.dumps({"event": "user_revoked",
                                               "user_id": VALID_USER["id"]}).encode())
        assert client.get(url, headers={"X-API-Key": API_KEY}).status_code == 200
        assert transport.count("cluster_auth_requests") == 2


def test_an_authenticator_without_events_keeps_working() -> None:
    transport = FakeTransport()
    rpc = RpcClient(transport)
    auth = Authenticator(AuthHarness().settings, rpc, observer=RecordingObserver())
    auth.revoke_user(1)
    auth.flush()


def test_a_reconnect_drops_this_workers_cache_since_events_may_have_been_missed(
        make_app: Any, transport: FakeTransport) -> None:
    client = make_app().test_client()
    url = f"{BASE}/namespaces?agent_id=a1"
    assert client.get(url, headers={"X-API-Key": API_KEY}).status_code == 200
    transport.set_connected(False)
    transport.set_connected(True)
    assert client.get(url, headers={"X-API-Key": API_KEY}).status_code == 200
    assert transport.count("cluster_auth_requests") == 2
