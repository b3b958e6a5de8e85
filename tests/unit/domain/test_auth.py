"""API key → user: the RPC, the per-worker cache, single flight and the HTTP fallback."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from cluster_service.domain.auth import Authenticator
from cluster_service.domain.users import FALLBACK_PATH, User, UserServiceClient
from cluster_service.config import Settings, load_settings
from cluster_service.errors import AuthBackendUnavailable, AuthenticationFailed
from cluster_service.rpc.client import RpcClient
from cluster_service.domain.api_key import ApiKey, cache_key

from ...conftest import VALID_USER
from ...support.fake_transport import FakeTransport
from ...support.recording import RecordingObserver
from ...support.service import wait_for

AUTH_QUEUE = "cluster_auth_requests"
GOOD, BAD, INACTIVE, BROKEN, SILENT = ("good-key", "bad-key", "inactive-key", "broken-key",
                                       "silent-key")
FALLBACK_USER = {"id": 11, "username": "fallback", "email": "f@example.com", "roles": None,
                 "is_active": True}


def auth_replies(body: dict[str, Any]) -> list[tuple[Any, float]] | None:
    """The User Service as the contract describes it, keyed by the API key."""
    request_id, key = body["request_id"], body["api_key"]
    if key == SILENT:
        return None
    if key == BROKEN:
        return [({"request_id": request_id, "error": "Authentication error: db down"}, 0)]
    if key == GOOD:
        return [({"request_id": request_id, "valid": True, "user_data": VALID_USER,
                  "message": "Authentication successful"}, 0)]
    if key == INACTIVE:
        return [({"request_id": request_id, "valid": True,
                  "user_data": dict(VALID_USER, is_active=False)}, 0)]
    if key == "no-user-data-key":
        return [({"request_id": request_id, "valid": True, "user_data": {"id": "x"}}, 0)]
    return [({"request_id": request_id, "valid": False, "error": "Invalid API key"}, 0)]


class StubFallback:
    """Stands in for UserServiceClient: answers per key and records the keys asked."""

    def __init__(self, verdicts: dict[str, Any] | None = None) -> None:
        self.verdicts = verdicts or {}
        self.asked: list[str] = []

    def validate(self, api_key: str) -> User:
        self.asked.append(api_key)
        verdict = self.verdicts.get(api_key, User.from_reply(FALLBACK_USER))
        if isinstance(verdict, Exception):
            raise verdict
        return verdict  # type: ignore[no-any-return]


def settings(**env: str) -> Settings:
    return load_settings({"AUTH_TIMEOUT": "1", "AUTH_CACHE_TTL": "30",
                          "AUTH_NEGATIVE_CACHE_TTL": "30", **env})


class AuthHarness:
    def __init__(self, fallback: StubFallback | None = None, connected: bool = True,
                 **env: str) -> None:
        self.settings = settings(**env)
        self.transport = FakeTransport(connected=connected)
        self.transport.responders[AUTH_QUEUE] = auth_replies
        self.observer = RecordingObserver()
        self.rpc = RpcClient(self.transport, fixed_queues=self.settings.result_queues,
                             connect_wait=0.5)
        self.fallback = fallback
        self.auth = Authenticator(self.settings, self.rpc, fallback,  # type: ignore[arg-type]
                                  self.observer)

    @property
    def rpcs(self) -> int:
        return self.transport.count(AUTH_QUEUE)


@pytest.fixture
def h() -> AuthHarness:
    return AuthHarness()


MISSING = object()
NOT_TRUE = [False, 0, 1, "true", "false", "no", None, [], {}, MISSING]
NOT_TRUE_IDS = ["false", "0", "1", "str-true", "str-false", "no", "null", "list", "object",
                "missing"]


class TestFailClosedIsActive:
    """Only ``is_active: true`` admits; the old code let everything but ``false`` in."""

    @pytest.mark.parametrize("value", NOT_TRUE, ids=NOT_TRUE_IDS)
    def test_broker_path(self, value: Any) -> None:
        user = dict(VALID_USER, is_active=value)
        if value is MISSING:
            del user["is_active"]
        h = AuthHarness()
        h.transport.responders[AUTH_QUEUE] = lambda body: [(
            {"request_id": body["request_id"], "valid": True, "user_data": user}, 0)]
        with pytest.raises(AuthenticationFailed):
            h.auth.authenticate("some-key")

    @pytest.mark.parametrize("value", NOT_TRUE, ids=NOT_TRUE_IDS)
    def test_http_fallback(self, value: Any) -> None:
        body = dict(VALID_USER, is_active=value)
        if value is MISSING:
            del body["is_active"]
        client, _ = http_client(FakeResponse(200, body))
        with pytest.raises(AuthenticationFailed):
            client.validate("k")


class TestVerdicts:
    def test_valid_key_gives_the_user(self, h: AuthHarness) -> None:
        user = h.auth.authenticate(GOOD)
        assert user == User(id=7, username="ana", email="ana@example.com", roles="admin,dev",
                            is_active=True)
        assert h.observer.auth["valid"] == 1

    def test_auth_request_body_and_queue(self, h: AuthHarness) -> None:
        h.auth.authenticate(GOOD)
        request = h.transport.published[0]
        body = json.loads(request.body)
        assert request.queue == h.settings.auth_request_queue
        assert body["api_key"] == GOOD and body["service"] == "cluster_service"
        assert body["request_id"] == request.call_id
        assert isinstance(body["timestamp"], float)
        assert request.expiration_ms == 1000

    def test_rejected_key_is_401(self, h: AuthHarness) -> None:
        with pytest.raises(AuthenticationFailed):
            h.auth.authenticate(BAD)

    def test_inactive_user_is_401(self, h: AuthHarness) -> None:
        with pytest.raises(AuthenticationFailed):
            h.auth.authenticate(INACTIVE)

    @pytest.mark.parametrize("key", [None, "", "k" * 257, "schlüssel", "has space",
                                     "line\nbreak", "tab\tkey"])
    def test_malformed_key_is_401_without_asking(self, h: AuthHarness, key: str | None) -> None:
        with pytest.raises(AuthenticationFailed):
            h.auth.authenticate(key)
        assert h.rpcs == 0

    def test_key_of_256_characters_is_asked(self, h: AuthHarness) -> None:
        with pytest.raises(AuthenticationFailed):
            h.auth.authenticate("k" * 256)
        assert h.rpcs == 1

    @pytest.mark.parametrize("key", [BROKEN, SILENT, "no-user-data-key"])
    def test_no_verdict_without_fallback_is_503(self, key: str) -> None:
        h = AuthHarness(AUTH_TIMEOUT="0.1")
        with pytest.raises(AuthBackendUnavailable):
            h.auth.authenticate(key)
        assert h.observer.auth["error"] == 1

    def test_broker_down_without_fallback_is_503(self) -> None:
        h = AuthHarness(connected=False)
        with pytest.raises(AuthBackendUnavailable):
            h.auth.authenticate(GOOD)
        assert h.rpcs == 0

    def test_backend_error_is_not_cached(self, h: AuthHarness) -> None:
        for _ in range(2):
            with pytest.raises(AuthBackendUnavailable):
                h.auth.authenticate(BROKEN)
        assert h.rpcs == 2


class TestCache:
    def test_second_request_within_the_ttl_sends_no_rpc(self, h: AuthHarness) -> None:
        first = h.auth.authenticate(GOOD)
        assert h.auth.authenticate(GOOD) is first
        assert h.rpcs == 1
        assert h.observer.auth["cached"] == 1

    def test_after_the_ttl_the_key_is_asked_again(self) -> None:
        h = AuthHarness(AUTH_CACHE_TTL="0.2")
        h.auth.authenticate(GOOD)
        assert h.rpcs == 1

        def asked_again() -> bool:
            h.auth.authenticate(GOOD)
            return h.rpcs == 2

        wait_for(asked_again, 3, interval=0.05, what="the cached key to expire")

    def test_ttl_zero_asks_every_time(self) -> None:
        h = AuthHarness(AUTH_CACHE_TTL="0")
        h.auth.authenticate(GOOD)
        h.auth.authenticate(GOOD)
        assert h.rpcs == 2

    def test_cache_is_keyed_by_sha256_never_the_key(self, h: AuthHarness) -> None:
        h.auth.authenticate(GOOD)
        keys = list(h.auth._valid._items)
        assert keys == [hashlib.sha256(GOOD.encode()).hexdigest()]
        assert GOOD not in keys

    def test_rejected_key_is_remembered(self, h: AuthHarness) -> None:
        for _ in range(3):
            with pytest.raises(AuthenticationFailed):
                h.auth.authenticate(BAD)
        assert h.rpcs == 1

    def test_inactive_user_is_remembered_as_rejected(self, h: AuthHarness) -> None:
        for _ in range(2):
            with pytest.raises(AuthenticationFailed):
                h.auth.authenticate(INACTIVE)
        assert h.rpcs == 1


def flight_followers(auth: Authenticator, api_key: str) -> int:
    """How many callers wait on the in-flight validation of ``api_key``."""
    flight = auth._flights._flights.get(cache_key(api_key))
    return len(flight.done._cond._waiters) if flight is not None else 0  # type: ignore


class TestSingleFlight:
    def test_twenty_concurrent_requests_with_one_key_send_one_rpc(self) -> None:
        h = AuthHarness(AUTH_TIMEOUT="5")
        replies: list[dict[str, Any]] = []

        def held_back(body: dict[str, Any]) -> None:
            replies.append({"request_id": body["request_id"], "valid": True,
                            "user_data": VALID_USER})
            return None

        h.transport.responders[AUTH_QUEUE] = held_back
        with ThreadPoolExecutor(max_workers=20) as pool:
            futures = [pool.submit(h.auth.authenticate, GOOD) for _ in range(20)]
            wait_for(lambda: flight_followers(h.auth, GOOD) == 19, 5, what="19 followers")
            reply = replies[0]
            h.transport.deliver("reply.fake", json.dumps(reply).encode(), reply["request_id"])
            users = [future.result(5) for future in futures]
        assert h.rpcs == 1
        assert {user.id for user in users} == {7}

    def test_a_shared_failure_reaches_every_caller(self) -> None:
        h = AuthHarness(AUTH_TIMEOUT="0.3")
        with ThreadPoolExecutor(max_workers=5) as pool:
            futures = [pool.submit(h.auth.authenticate, SILENT) for _ in range(5)]
            for future in futures:
                with pytest.raises(AuthBackendUnavailable):
                    future.result(5)
        assert 1 <= h.rpcs <= 5
        assert len(h.auth._flights) == 0


class TestFallback:
    @pytest.mark.parametrize("key,env,connected", [
        (BROKEN, {}, True),
        (SILENT, {"AUTH_TIMEOUT": "0.1"}, True),
        (GOOD, {}, False),
    ], ids=["backend-error", "timeout", "broker-down"])
    def test_broker_path_without_verdict_uses_the_fallback(self, key: str, env: dict[str, str],
                                                           connected: bool) -> None:
        fallback = StubFallback()
        h = AuthHarness(fallback, connected=connected, **env)
        assert h.auth.authenticate(key).username == "fallback"
        assert fallback.asked == [key]
        assert h.observer.auth["fallback"] == 1
        h.auth.authenticate(key)  # cached now
        assert fallback.asked == [key]

    def test_valid_false_never_falls_back(self) -> None:
        fallback = StubFallback()
        h = AuthHarness(fallback)
        with pytest.raises(AuthenticationFailed):
            h.auth.authenticate(BAD)
        assert fallback.asked == []

    def test_inactive_user_never_falls_back(self) -> None:
        fallback = StubFallback()
        h = AuthHarness(fallback)
        with pytest.raises(AuthenticationFailed):
            h.auth.authenticate(INACTIVE)
        assert fallback.asked == []

    def test_fallback_rejection_is_401_and_remembered(self) -> None:
        fallback = StubFallback({BROKEN: AuthenticationFailed()})
        h = AuthHarness(fallback)
        for _ in range(2):
            with pytest.raises(AuthenticationFailed):
                h.auth.authenticate(BROKEN)
        assert fallback.asked == [BROKEN]

    def test_fallback_unavailable_is_503(self) -> None:
        fallback = StubFallback({BROKEN: AuthBackendUnavailable()})
        h = AuthHarness(fallback)
        with pytest.raises(AuthBackendUnavailable):
            h.auth.authenticate(BROKEN)


class FakeResponse:
    def __init__(self, status: int, body: Any = None) -> None:
        self.status_code = status
        self._body = body
        self.content = b"" if isinstance(body, Exception) else json.dumps(body).encode()

    def json(self) -> Any:
        if isinstance(self._body, Exception):
            raise self._body
        return self._body


class FakeSession:
    """Records each GET and answers with a prepared response or raises."""

    def __init__(self, answer: FakeResponse | Exception) -> None:
        self.answer = answer
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get(self, url: str, **kwargs: Any) -> FakeResponse:
        self.calls.append((url, kwargs))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def http_client(answer: FakeResponse | Exception, **env: str) -> tuple[UserServiceClient,
                                                                       FakeSession]:
    session = FakeSession(answer)
    config = settings(USER_SERVICE_URL="https://users.example.com/", **env)
    return UserServiceClient(config, session=session), session  # type: ignore[arg-type]


class TestUserServiceClient:
    def test_environment_proxies_are_never_used(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With HTTP(S)_PROXY set, the key still goes straight to USER_SERVICE_URL."""
        from ...support.user_service_stub import UserServiceStub

        with UserServiceStub({"the-key": (200, VALID_USER)}) as users, \
                UserServiceStub({}) as proxy:
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
                monkeypatch.setenv(name, proxy.url)
            for name in ("NO_PROXY", "no_proxy"):
                monkeypatch.delenv(name, raising=False)
            client = UserServiceClient(settings(USER_SERVICE_URL=users.url,
                                                USER_SERVICE_ALLOW_HTTP="true"))
            assert client.validate("the-key").username == "ana"
            assert users.count("the-key") == 1
            assert proxy.asked == []

    def test_200_is_the_user_and_the_request_is_as_documented(self) -> None:
        client, session = http_client(FakeResponse(200, dict(VALID_USER, extra="ignored")))
        assert client.validate("the-key").username == "ana"
        [(url, kwargs)] = session.calls
        assert url == "https://users.example.com" + FALLBACK_PATH
        assert kwargs["headers"] == {"X-API-Key": "the-key"}
        assert kwargs["timeout"] == 5.0
        assert kwargs["verify"] is True
        assert kwargs["allow_redirects"] is False

    def test_tls_verification_can_use_a_ca_bundle(self, tmp_path: Path) -> None:
        bundle = tmp_path / "ca.pem"
        bundle.write_text("-----BEGIN CERTIFICATE-----\n")
        client, session = http_client(FakeResponse(200, VALID_USER),
                                      USER_SERVICE_CA_BUNDLE=str(bundle))
        client.validate("k")
        assert session.calls[0][1]["verify"] == str(bundle)

    def test_tls_verification_can_be_turned_off_explicitly(self) -> None:
        client, session = http_client(FakeResponse(200, VALID_USER),
                                      USER_SERVICE_VERIFY_SSL="false")
        client.validate("k")
        assert session.calls[0][1]["verify"] is False

    @pytest.mark.parametrize("status", [401, 403])
    def test_401_and_403_reject_the_key(self, status: int) -> None:
        client, _ = http_client(FakeResponse(status, {"detail": "no"}))
        with pytest.raises(AuthenticationFailed):
            client.validate("k")

    def test_a_licence_lapse_is_unavailable_not_a_rejection(self) -> None:
        client, _ = http_client(FakeResponse(403, {"error": "LICENSE_EXPIRED",
                                                   "message": "License has expired"}))
        with pytest.raises(AuthBackendUnavailable):
            client.validate("k")

    @pytest.mark.parametrize("body", [{"error": "FORBIDDEN"}, {"error": ["LICENSE_EXPIRED"]},
                                      ValueError("not json"), ["LICENSE_EXPIRED"]])
    def test_any_other_403_rejects_the_key(self, body: Any) -> None:
        client, _ = http_client(FakeResponse(403, body))
        with pytest.raises(AuthenticationFailed):
            client.validate("k")

    def test_inactive_user_is_rejected(self) -> None:
        client, _ = http_client(FakeResponse(200, dict(VALID_USER, is_active=False)))
        with pytest.raises(AuthenticationFailed):
            client.validate("k")

    @pytest.mark.parametrize("answer", [
        FakeResponse(500, {}), FakeResponse(302, None), FakeResponse(404, {}),
        FakeResponse(200, ValueError("not json")), FakeResponse(200, ["a list"]),
        FakeResponse(200, {"username": "no id"}),
        requests.ConnectionError("refused"), requests.Timeout("slow"),
        requests.exceptions.SSLError("bad certificate"),
    ], ids=["500", "302", "404", "not-json", "list", "no-id", "refused", "timeout", "tls"])
    def test_anything_else_is_unavailable(self, answer: FakeResponse | Exception) -> None:
        client, _ = http_client(answer)
        with pytest.raises(AuthBackendUnavailable):
            client.validate("k")


class TestUserFromReply:
    def test_roles_may_be_null(self) -> None:
        user = User.from_reply({"id": 1, "username": "u", "roles": None, "is_active": True})
        assert user.roles is None and user.is_active is True

    @pytest.mark.parametrize("value", NOT_TRUE, ids=NOT_TRUE_IDS)
    def test_only_json_true_is_active(self, value: Any,
                                      caplog: pytest.LogCaptureFixture) -> None:
        data = {"id": 1, "username": "secret-name", "is_active": value}
        if value is MISSING:
            del data["is_active"]
        with caplog.at_level(logging.WARNING, logger="cluster_service.domain.users"):
            assert User.from_reply(data).is_active is False
        faults = [r for r in caplog.records if getattr(r, "event", "") == "peer_fault"]
        assert len(faults) == (0 if value is False else 1)
        assert "secret-name" not in caplog.text  # the body is never logged

    @pytest.mark.parametrize("data", [None, [], {"id": True, "username": "u"},
                                      {"id": "7", "username": "u"}, {"id": 7}])
    def test_unusable_user_data_is_the_peers_fault(self, data: Any) -> None:
        from cluster_service.errors import RemoteError

        with pytest.raises(RemoteError):
            User.from_reply(data)


def test_threads_share_nothing_but_the_cache(h: AuthHarness) -> None:
    """Different keys authenticate independently and concurrently."""
    errors: list[BaseException] = []

    def run(key: str) -> None:
        try:
            if key == GOOD:
                h.auth.authenticate(key)
            else:
                with pytest.raises(AuthenticationFailed):
                    h.auth.authenticate(key)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(GOOD if n % 2 else f"bad-{n}",))
               for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert errors == []
    assert h.rpcs == 1 + 5


def test_an_api_key_value_never_shows_its_secret_or_digest() -> None:
    key = ApiKey("a-secret-key")
    assert key.digest == cache_key("a-secret-key") and key.fingerprint == key.digest[:12]
    assert "a-secret-key" not in repr(key) and key.digest not in repr(key)
    assert key.fingerprint in repr(key)
