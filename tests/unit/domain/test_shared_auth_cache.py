"""The fleet-wide auth cache against a private, real redis-server (killed and restarted here)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Iterator

import pytest
import redis

from cluster_service.domain.api_key import cache_key
from cluster_service.domain.auth import Authenticator
from cluster_service.errors import AuthenticationFailed
from cluster_service.rpc.client import RpcClient
from cluster_service.domain.shared_auth_cache import RETRY_EVERY_S, SharedAuthCache

from ...conftest import VALID_USER
from ...support.fake_transport import FakeTransport
from ...support.recording import RecordingObserver
from ...support.redis_server import REDIS_SERVER, RedisServer
from ...support.service import wait_for
from .test_auth import AUTH_QUEUE, BAD, GOOD, auth_replies, settings

pytestmark = [pytest.mark.redis,
              pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")]

SECRET = "test-secret-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    running = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield running
    running.stop()


@pytest.fixture
def store(server: RedisServer) -> Iterator[redis.Redis]:
    if server.proc is None or server.proc.poll() is not None:
        server.start()
    client = server.client()
    client.flushdb()
    yield client
    client.close()


class Worker:
    """One worker's Authenticator over a fake broker, with the shared cache on ``server``."""

    def __init__(self, server: RedisServer, **env: str) -> None:
        self.settings = settings(AUTH_CACHE_URI=server.url, AUTH_CACHE_SECRET=SECRET, **env)
        self.transport = FakeTransport()
        self.transport.responders[AUTH_QUEUE] = auth_replies
        self.observer = RecordingObserver()
        self.shared = SharedAuthCache(self.settings, self.observer)
        self.auth = Authenticator(self.settings, RpcClient(self.transport, connect_wait=0.5),
                                  observer=self.observer, shared=self.shared)

    @property
    def rpcs(self) -> int:
        return self.transport.count(AUTH_QUEUE)


class TestStorage:
    def test_entries_are_named_by_hmac_never_by_the_key_or_its_sha256(
            self, server: RedisServer, store: redis.Redis) -> None:
        worker = Worker(server)
        worker.auth.authenticate(GOOD)
        names = [name.decode() for name in store.scan_iter()]
        stored = b"".join(store.dump(name) or b"" for name in names).decode("latin-1")
        for secret_form in (GOOD, hashlib.sha256(GOOD.encode()).hexdigest()):
            assert not any(secret_form in name for name in names)
            assert secret_form not in stored
        assert worker.shared.entry_name(cache_key(GOOD)) in names
        assert worker.shared.members_name(VALID_USER["id"]) in names
        assert not any(name.endswith(f":{VALID_USER['id']}") for name in names)

    def test_a_validation_lives_for_the_ttl_a_rejection_for_the_negative_ttl(
            self, server: RedisServer, store: redis.Redis) -> None:
        worker = Worker(server, AUTH_CACHE_TTL="30", AUTH_NEGATIVE_CACHE_TTL="5")
        worker.auth.authenticate(GOOD)
        with pytest.raises(AuthenticationFailed):
            worker.auth.authenticate(BAD)
        assert 29_000 < store.pttl(worker.shared.entry_name(cache_key(GOOD))) <= 30_000
        assert 4_000 < store.pttl(worker.shared.entry_name(cache_key(BAD))) <= 5_000
        assert json.loads(store.get(worker.shared.entry_name(cache_key(BAD))).partition(b".")[2])[
            "user"] is None


class TestAcrossWorkers:
    def test_one_rpc_for_a_key_across_six_workers(self, server: RedisServer,
                                                  store: redis.Redis) -> None:
        workers = [Worker(server) for _ in range(6)]
        for worker in workers:
            assert worker.auth.authenticate(GOOD).id == VALID_USER["id"]
        assert sum(w.rpcs for w in workers) == 1
        assert sum(w.observer.shared_cache["hit"] for w in workers) == 5

    def test_a_rejection_is_shared_too(self, server: RedisServer, store: redis.Redis) -> None:
        workers = [Worker(server) for _ in range(3)]
        for worker in workers:
            with pytest.raises(AuthenticationFailed):
                worker.auth.authenticate(BAD)
        assert sum(w.rpcs for w in workers) == 1

    def test_revocation_purges_the_users_entries_in_redis(self, server: RedisServer,
                                                          store: redis.Redis) -> None:
        first, second = Worker(server), Worker(server)
        first.auth.authenticate(GOOD)
        first.auth.revoke_user(VALID_USER["id"])
        wait_for(lambda: store.get(first.shared.entry_name(cache_key(GOOD))) is None, 5,
                 what="the entry purged from Redis")
        assert not store.exists(first.shared.members_name(VALID_USER["id"]))
        second.auth.authenticate(GOOD)
        assert second.rpcs == 1

    def test_an_entry_older_than_a_revocation_is_not_used_even_before_the_purge(
            self, server: RedisServer, store: redis.Redis) -> None:
        first, second = Worker(server), Worker(server)
        first.auth.authenticate(GOOD)
        name = first.shared.entry_name(cache_key(GOOD))
        entry = store.get(name)
        second.auth.revoke_user(VALID_USER["id"])  # second's event; first's purge not yet
        wait_for(lambda: store.get(name) is None, 5, what="second's purge")
        store.set(name, entry, px=30_000)  # as if first had not been purged yet
        second.auth.authenticate(GOOD)
        assert second.rpcs == 1  # the stale entry was not trusted

    def test_flush_purges_every_entry(self, server: RedisServer, store: redis.Redis) -> None:
        worker = Worker(server)
        worker.auth.authenticate(GOOD)
        with pytest.raises(AuthenticationFailed):
            worker.auth.authenticate(BAD)
        store.set("someone-else:key", "kept")
        worker.auth.flush()
        wait_for(lambda: store.keys("cluster_service:auth:*") == [], 5, what="the flush")
        assert store.get("someone-else:key") == b"kept"


OTHER_USER = {**VALID_USER, "id": 99, "username": "mallory"}


def sealed_payload(worker: Worker, payload: bytes, name: str | None = None) -> bytes:
    """An entry whose MAC is right for ``payload`` (only a secret holder could write it)."""
    name = name or worker.shared.entry_name(cache_key(GOOD))
    return worker.shared._mac(name, payload).encode() + b"." + payload


class TestEntriesOthersWrote:
    """Redis is shared: whatever someone without the secret writes there is a miss."""

    def believed_nothing(self, worker: Worker, caplog: pytest.LogCaptureFixture,
                         planted: bytes) -> None:
        caplog.set_level(logging.WARNING, "cluster_service.domain.shared_auth_cache")
        assert worker.auth.authenticate(GOOD).id == VALID_USER["id"]
        assert worker.rpcs == 1  # asked the User Service, as for a miss
        assert worker.observer.shared_cache["invalid"] == 1
        lines = [r for r in caplog.records if getattr(r, "event", "") == "auth_cache_invalid"]
        assert len(lines) == 1 and lines[0].levelno == logging.WARNING
        text = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
        assert planted[-40:].decode("latin-1") not in text and "mallory" not in text

    def test_a_planted_entry_for_another_users_identity(
            self, server: RedisServer, store: redis.Redis,
            caplog: pytest.LogCaptureFixture) -> None:
        worker = Worker(server)
        payload = json.dumps({"asked_at": time.time(), "user": OTHER_USER}).encode()
        planted = b"0" * 64 + b"." + payload
        store.set(worker.shared.entry_name(cache_key(GOOD)), planted, px=30_000)
        self.believed_nothing(worker, caplog, planted)

    def test_an_edited_entry(self, server: RedisServer, store: redis.Redis,
                             caplog: pytest.LogCaptureFixture) -> None:
        writer, reader = Worker(server), Worker(server)
        writer.auth.authenticate(GOOD)
        name = writer.shared.entry_name(cache_key(GOOD))
        edited = store.get(name).replace(b'"id":7', b'"id":99').replace(b"ana", b"mallory")
        assert edited != store.get(name)
        store.set(name, edited, px=30_000)
        self.believed_nothing(reader, caplog, edited)

    def test_a_future_dated_entry(self, server: RedisServer, store: redis.Redis,
                                  caplog: pytest.LogCaptureFixture) -> None:
        worker = Worker(server)
        # Even with a valid MAC (a worker with a clock far ahead): it would outlive revocations.
        payload = json.dumps({"asked_at": time.time() + 3600.0, "user": VALID_USER},
                             separators=(",", ":"), sort_keys=True).encode()
        planted = sealed_payload(worker, payload)
        store.set(worker.shared.entry_name(cache_key(GOOD)), planted, px=30_000)
        self.believed_nothing(worker, caplog, planted)

    def test_an_absurd_entry(self, server: RedisServer, store: redis.Redis,
                             caplog: pytest.LogCaptureFixture) -> None:
        worker = Worker(server)
        payload = b'{"asked_at":1' + b"0" * 400 + b',"user":null}'  # 10**400: no float holds it
        planted = sealed_payload(worker, payload)
        store.set(worker.shared.entry_name(cache_key(GOOD)), planted, px=30_000)
        self.believed_nothing(worker, caplog, planted)

    def test_an_oversized_entry(self, server: RedisServer, store: redis.Redis,
                                caplog: pytest.LogCaptureFixture) -> None:
        worker = Worker(server)
        planted = b"0" * 64 + b"." + b"x" * 1_000_000
        store.set(worker.shared.entry_name(cache_key(GOOD)), planted, px=30_000)
        self.believed_nothing(worker, caplog, planted)

    @pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"user": 5, "asked_at": 1}',
                                     b'{"user": {"id": "x"}, "asked_at": 1e18}',
                                     # NaN compares false with every revocation time
                                     json.dumps({"user": VALID_USER}).encode()[:-1]
                                     + b', "asked_at": NaN}'])
    def test_a_malformed_entry_is_a_miss_even_with_a_valid_mac(
            self, server: RedisServer, store: redis.Redis, raw: bytes) -> None:
        worker = Worker(server)
        store.set(worker.shared.entry_name(cache_key(GOOD)), sealed_payload(worker, raw), px=30_000)
        assert worker.auth.authenticate(GOOD).id == VALID_USER["id"]
        assert worker.rpcs == 1
        assert worker.observer.shared_cache["invalid"] == 1

    def test_an_entry_of_another_type_is_a_miss_and_redis_stays_in_use(
            self, server: RedisServer, store: redis.Redis,
            caplog: pytest.LogCaptureFixture) -> None:
        worker = Worker(server)
        store.rpush(worker.shared.entry_name(cache_key(GOOD)), b"x")
        store.set(worker.shared.members_name(VALID_USER["id"]), b"not a set")
        self.believed_nothing(worker, caplog, b"not a set")
        assert worker.observer.shared_cache["error"] == 0  # not taken for an outage
        other = Worker(server)
        assert other.auth.authenticate(GOOD).id == VALID_USER["id"]
        assert other.rpcs == 0  # the first worker's verdict was stored all the same

    def test_a_planted_rejection_does_not_lock_a_valid_key_out(
            self, server: RedisServer, store: redis.Redis) -> None:
        worker = Worker(server)
        payload = json.dumps({"asked_at": time.time(), "user": None}).encode()
        store.set(worker.shared.entry_name(cache_key(GOOD)), b"f" * 64 + b"." + payload, px=30_000)
        assert worker.auth.authenticate(GOOD).id == VALID_USER["id"]


class TestRedisOutage:
    def test_redis_down_falls_back_logs_once_and_recovers(
            self, server: RedisServer, store: redis.Redis,
            caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, "cluster_service.domain.shared_auth_cache")
        worker = Worker(server)
        server.kill()
        started = time.monotonic()
        for _ in range(5):
            worker.auth.flush()  # forget locally, so every call looks further
            assert worker.auth.authenticate(GOOD).id == VALID_USER["id"]
        assert time.monotonic() - started < 2  # no request waited on Redis for long
        assert worker.rpcs == 5
        down = [r for r in caplog.records if r.event == "auth_cache_unavailable"]
        assert len(down) == 1 and GOOD not in caplog.text and SECRET not in caplog.text
        server.start()
        # The same worker goes back to Redis by itself within RETRY_EVERY_S.
        entry = worker.shared.entry_name(cache_key(GOOD))
        wait_for(lambda: worker.shared.get(entry) is not None or any(
            r.event == "auth_cache_recovered" for r in caplog.records),
            RETRY_EVERY_S + 5, interval=0.2, what="the recovery")
        assert [r.event for r in caplog.records].count("auth_cache_recovered") == 1
        worker.auth.revoke_user(999)  # unrelated; keeps the purge thread busy harmlessly
        others = [Worker(server), Worker(server)]
        for other in others:
            other.auth.authenticate(GOOD)
        assert [other.rpcs for other in others] == [1, 0]
