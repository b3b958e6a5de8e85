"""Bounded Redis calls (``redis_options.py``) against a real redis-server and fake ones."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
import redis

from cluster_service.config import load_settings
from cluster_service.domain import redis_options
from cluster_service.domain.redis_options import client_options

from ...support.fake_redis import DrippingRedis, StallingRedis
from ...support.redis_server import REDIS_SERVER, RedisServer

pytestmark = [pytest.mark.redis,
              pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")]

BUDGET = 0.2
SETTINGS = load_settings({"REDIS_TIMEOUT": str(BUDGET)})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    running = RedisServer(Path(tmp_path_factory.mktemp("redis"))).start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def forget_unresponsive() -> None:
    redis_options._unresponsive_until.clear()


def bounded(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, **client_options(SETTINGS, url))


def test_a_pooled_connection_idle_longer_than_the_budget_still_works(
        server: RedisServer) -> None:
    client = bounded(server.url)
    assert client.set("k", "v")
    time.sleep(BUDGET * 2)  # idle: the last command's deadline is long past
    assert client.get("k") == b"v"
    assert client.getrange("k", 0, 10) == b"v"


@pytest.mark.parametrize("fake", [StallingRedis, DrippingRedis])
def test_a_misbehaving_server_costs_one_budget_then_fails_at_once(fake: type) -> None:
    with fake() as server:
        client = bounded(server.url)
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.get("k")
        first = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(redis.RedisError):
            bounded(server.url).get("k")  # another client of the same server
        second = time.monotonic() - started
    assert first < BUDGET * 2 + 0.1, first
    assert second < 0.05, second
