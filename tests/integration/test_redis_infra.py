"""Redis as shared production infrastructure: TLS with verification, and bounded calls.

The service's two Redis clients (the rate limiter's storage and the fleet auth
cache) against a real ``redis-server --tls-port`` with certificates made here,
and against fake servers that stall or answer a byte at a time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from ..support.faults import API_KEY
from ..support.fake_redis import DrippingRedis, StallingRedis
from ..support.redis_server import REDIS_SERVER, RedisServer
from ..support.service import ServiceProcess
from ..support.tls_certs import OPENSSL, Certs, make_certs

pytestmark = [pytest.mark.rabbitmq, pytest.mark.gunicorn, pytest.mark.redis,
              pytest.mark.skipif(not (REDIS_SERVER and OPENSSL),
                                 reason="redis-server or openssl is not installed")]

SECRET = "a-fleet-cache-secret-0123"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-tls"), tls=certs).start()
    yield server
    server.stop()


def redis_env(url: str, **env: str) -> dict[str, str]:
    return {"AUTH_CACHE_URI": url, "AUTH_CACHE_SECRET": SECRET, "RATE_LIMIT_ENABLED": "true",
            "RATE_LIMIT_STORAGE_URI": url, "RATE_LIMIT_REQUESTS_PER_MINUTE": "1000", **env}


def agents(service: ServiceProcess) -> tuple[int, float]:
    started = time.monotonic()
    response = service.get("/agents/connected", headers={"X-API-Key": API_KEY}, timeout=15)
    return response.status_code, time.monotonic() - started


class TestRediss:
    def test_both_clients_use_the_tls_redis(
            self, tls_redis: RedisServer, certs: Certs, peers: Any, tmp_path: Path,
            service_factory: Callable[..., ServiceProcess]) -> None:
        with tls_redis.client() as client:
            client.flushall()
        uri_file = tmp_path / "auth-cache-uri"
        uri_file.write_text(tls_redis.url + "\n")
        env = redis_env(tls_redis.url, REDIS_CA_FILE=str(certs.ca))
        del env["AUTH_CACHE_URI"]
        service = service_factory(AUTH_CACHE_URI_FILE=str(uri_file), WEB_CONCURRENCY="1", **env)
        assert agents(service)[0] == 200
        time.sleep(0.7)  # idle beyond REDIS_TIMEOUT: pooled connections must still serve
        assert agents(service)[0] == 200
        with tls_redis.client() as client:
            names = [name.decode() for name in client.scan_iter()]
        assert any(name.startswith("cluster_service:auth:key:") for name in names), names
        assert any("LIMITER/cluster_service" in name for name in names), names
        logs = service.logs()
        assert "auth_cache_unavailable" not in logs and "limiter_fallback" not in logs
        assert "unreachable" not in logs.lower()  # Flask-Limiter's own fallback line

    def test_a_redis_certificate_from_another_ca_is_not_used(
            self, tls_redis: RedisServer, certs: Certs, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        with tls_redis.client() as client:
            client.flushall()
        service = service_factory(WEB_CONCURRENCY="1",
                                  **redis_env(tls_redis.url, REDIS_CA_FILE=str(certs.other_ca)))
        assert agents(service)[0] == 200  # served without the cache, as if Redis were absent
        with tls_redis.client() as client:
            assert client.dbsize() == 0
        assert "auth_cache_unavailable" in service.logs()


class TestMisbehavingRedis:
    @pytest.mark.parametrize("kind", ["stalls", "drips"])
    def test_requests_are_answered_within_about_a_second(
            self, kind: str, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        fake = StallingRedis() if kind == "stalls" else DrippingRedis(interval=0.1)
        with fake:
            service = service_factory(WEB_CONCURRENCY="1", **redis_env(fake.url))
            outcomes = [agents(service) for _ in range(6)]
        print(f"\nRedis that {kind}: {[f'{s} {t:.2f}s' for s, t in outcomes]}")
        assert all(status == 200 for status, _ in outcomes), outcomes
        # One bounded Redis call (0.5 s) at most, plus the request's own few milliseconds.
        assert max(elapsed for _, elapsed in outcomes) < 1.2, outcomes
        assert fake.connections >= 1  # it was asked
