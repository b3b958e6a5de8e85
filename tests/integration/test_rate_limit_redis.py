"""Rate limits in Redis, under the real gunicorn with several workers.

* Against the shared Redis (127.0.0.1:6379, database 11, only this test's keys
  touched): with 4 workers and a limit of L, exactly L requests succeed.
* Against a private redis-server that the test kills and restarts on the same
  port: the service keeps answering on per-process limits, logs the fallback
  once, and goes back to Redis when it returns.
"""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis
import requests

from ..support.peers import start_peers
from ..support.rate_window import fresh_window
from ..support.redis_server import REDIS_SERVER, RedisServer
from ..support.service import ServiceProcess, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.gunicorn, pytest.mark.rabbitmq]

SHARED_REDIS_DB = 11
SHARED_REDIS = f"redis://127.0.0.1:6379/{SHARED_REDIS_DB}"
ENVELOPE = {"success", "error", "message", "request_id", "timestamp"}
FLASK_LIMITER_FALLBACK = "Rate limit storage unreachable - falling back to in-memory storage"


def user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "username": f"u{user_id}", "email": f"u{user_id}@example.com",
            "roles": None, "is_active": True}


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def shared_redis() -> Iterator[redis.Redis]:
    client: redis.Redis = redis.Redis.from_url(SHARED_REDIS, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        pytest.fail(f"the shared Redis on 127.0.0.1:6379 does not answer: {error!r}")
    yield client
    client.close()


def test_exactly_the_limit_across_four_workers(
        prefix: str, service_factory: Callable[..., ServiceProcess],
        shared_redis: redis.Redis) -> None:
    limit = 20
    keys = [f"rl-{uuid.uuid4().hex}" for _ in range(3)]
    peers = start_peers(prefix, api_keys={key: user(41 + i) for i, key in enumerate(keys)})
    try:
        service = service_factory(WEB_CONCURRENCY="4", GUNICORN_THREADS="4",
                                  RATE_LIMIT_ENABLED="true",
                                  RATE_LIMIT_REQUESTS_PER_MINUTE=str(limit),
                                  RATE_LIMIT_STORAGE_URI=SHARED_REDIS)
        assert len(service.worker_pids()) == 4
        # A slow agent (150 ms) keeps threads busy, so the connections spread over
        # the workers; each round uses a fresh key (its own budget) and is exact.
        # Rounds repeat (at most 3) until one was served by two workers or more.
        url = service.base_url + "/namespaces?agent_id=slow-150-rl"
        for key in keys:
            def call(_: int, key: str = key) -> requests.Response:
                # no session: a new connection each time, for any worker to accept
                return requests.get(url, headers={"X-API-Key": key}, timeout=30)

            fresh_window(5)  # the round runs within one limiter window
            with ThreadPoolExecutor(max_workers=8) as pool:
                statuses = [r.status_code for r in pool.map(call, range(limit + 10))]
            assert statuses.count(200) == limit, statuses
            assert statuses.count(429) == 10, statuses
            following = call(0)
            assert following.status_code == 429
            assert set(following.json()) == ENVELOPE
            assert following.json()["error"] == "rate_limit_exceeded"
            assert int(following.headers["Retry-After"]) >= 1
            assert following.headers["X-RateLimit-Limit"] == str(limit)
            assert following.headers["X-RateLimit-Remaining"] == "0"
            served_by = {line["pid"] for line in service.json_logs()
                         if line.get("event") == "access" and line.get("status") == 200
                         and line.get("key_fp") == sha(key)[:12]}
            if len(served_by) >= 2:
                break
        else:
            pytest.fail("every round was served by a single worker; exactness not shown")
        # the probes stay unlimited
        assert all(service.get("/health").status_code == 200 for _ in range(3))

        stored = [k.decode() for k in shared_redis.scan_iter(match="*", count=1000)]
        assert any(sha(keys[0]) in k for k in stored), stored[:20]
        assert not any(key in k for k in stored for key in keys)
    finally:
        peers.stop()
        for key in keys:
            for k in shared_redis.scan_iter(match=f"*{sha(key)}*"):
                shared_redis.delete(k)


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_redis_outage_falls_back_to_process_limits_and_recovers(
        tmp_path: Path, prefix: str, service_factory: Callable[..., ServiceProcess]) -> None:
    keys = {name: f"{name}-{uuid.uuid4().hex}" for name in ("before", "during", "after")}
    private = RedisServer(tmp_path).start()
    peers = start_peers(prefix, api_keys={k: user(50 + i) for i, k in enumerate(keys.values())})
    try:
        service = service_factory(WEB_CONCURRENCY="1", GUNICORN_THREADS="4",
                                  RATE_LIMIT_ENABLED="true", RATE_LIMIT_REQUESTS_PER_MINUTE="5",
                                  RATE_LIMIT_STORAGE_URI=private.url, AUTH_CACHE_TTL="0")

        seen: list[tuple[int, str]] = []

        def call(name: str) -> requests.Response:
            response = service.get("/agents/connected", headers={"X-API-Key": keys[name]},
                                   timeout=10)
            seen.append((response.status_code, response.text[:200]))
            return response

        def stored_for(name: str) -> bool:
            with private.client() as client:
                return any(sha(keys[name]) in k.decode() for k in client.scan_iter(count=1000))

        assert [call("before").status_code for _ in range(2)] == [200, 200]
        assert stored_for("before")

        fresh_window(6)  # the outage's counted requests run within one limiter window
        private.kill()
        # Redis is gone: every request is still answered, on this process's own limit.
        statuses = [call("during").status_code for _ in range(8)]
        assert statuses == [200] * 5 + [429] * 3, statuses
        assert service.get("/health").status_code == 200

        lines = service.json_logs()
        limiter_fallbacks = [x for x in lines if x.get("message") == FLASK_LIMITER_FALLBACK]
        guard_fallbacks = [x for x in lines if x.get("event") == "limiter_fallback"]
        assert len(limiter_fallbacks) == 1, limiter_fallbacks
        assert len(guard_fallbacks) == 1, guard_fallbacks
        assert "Traceback" not in service.logs()

        private.start()  # same port
        # Back on Redis within Flask-Limiter's back-off: new hits land in Redis again.
        wait_for(lambda: call("after") is not None and stored_for("after"), timeout=25,
                 interval=0.5, what="the limiter writing to Redis again")
        lines = service.json_logs()
        assert any(x.get("message") == "Rate limit storage recovered" for x in lines)
        assert len([x for x in lines if x.get("message") == FLASK_LIMITER_FALLBACK]) == 1
        wait_for(lambda: call("after") is not None and any(
            x.get("event") == "limiter_recovered" for x in service.json_logs()),
            timeout=10, interval=0.5, what="the brute-force guard back on Redis")
        # never anything but served or limited, from start to end
        assert all(status in (200, 429) for status, _ in seen), seen
    finally:
        peers.stop()
        private.stop()
