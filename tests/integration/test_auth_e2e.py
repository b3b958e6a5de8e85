"""Authentication end to end: the per-worker key cache and the HTTP fallback.

One gunicorn worker (so "the second request" meets the same cache), the
stand-in peers, and a local HTTP stand-in for the User Service's fallback API.
"""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace
from typing import Iterator

import pytest
import requests

from ..support.peers import delete_queues, start_peers
from ..support.prometheus import metric_sum
from ..support.service import ServiceProcess, queue_env, wait_for
from ..support.user_service_stub import UserServiceStub

pytestmark = [pytest.mark.rabbitmq, pytest.mark.gunicorn]

AUTH_CACHE_TTL = 1.5
AUTH_TIMEOUT = 1.0
FALLBACK_USER = {"id": 21, "username": "via-http", "email": "h@example.com", "roles": None,
                 "is_active": True}
# Keys the stand-in User Service answers with a backend error, so the fallback is asked.
ERROR_KEYS = frozenset({"backend-error-key", "err-rejected-key", "err-forbidden-key",
                        "err-inactive-key", "err-500-key", "err-down-key",
                        "err-licence-key"})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimpleNamespace]:
    prefix = f"t-{uuid.uuid4().hex[:10]}-"
    stub = UserServiceStub({
        "backend-error-key": (200, FALLBACK_USER),
        "silent-auth-key": (200, FALLBACK_USER),
        "err-rejected-key": (401, {"detail": "Invalid API key"}),
        "err-forbidden-key": (403, {"detail": "Forbidden"}),
        "err-inactive-key": (200, dict(FALLBACK_USER, is_active=False)),
        "err-500-key": (500, {"detail": "boom"}),
        "err-down-key": (200, FALLBACK_USER),
        # The User Service's licence middleware, before any key is checked.
        "err-licence-key": (403, {"error": "LICENSE_EXPIRED",
                                  "message": "License has expired"}),
    }).start()
    peers = start_peers(prefix, auth_error_keys=ERROR_KEYS)
    service = ServiceProcess(tmp_path_factory.mktemp("auth"), {
        **queue_env(prefix), "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "4",
        "AUTH_CACHE_TTL": str(AUTH_CACHE_TTL), "AUTH_TIMEOUT": str(AUTH_TIMEOUT),
        "USER_SERVICE_URL": stub.url, "USER_SERVICE_ALLOW_HTTP": "true",
        "WEBSOCKET_TIMEOUT": "5"})
    try:
        service.start()
        yield SimpleNamespace(service=service, peers=peers, stub=stub, prefix=prefix)
    finally:
        service.stop()
        peers.stop()
        if stub.is_running:
            stub.stop()
        delete_queues(prefix)


def namespaces(service: ServiceProcess, key: str) -> requests.Response:
    return service.get("/namespaces", params={"agent_id": "demo-agent-1"},
                       headers={"X-API-Key": key})


def auth_rpcs(env: SimpleNamespace) -> int:
    return int(env.peers.counters["requests_auth"])


def test_key_is_cached_for_the_ttl(env: SimpleNamespace) -> None:
    auth_queue = queue_env(env.prefix)["AUTH_REQUEST_QUEUE"]
    before = auth_rpcs(env)
    started = time.monotonic()
    assert namespaces(env.service, "demo-key").status_code == 200
    assert auth_rpcs(env) == before + 1
    wait_for(lambda: metric_sum(env.service.get("/metrics").text, "cluster_rpc_published_total",
                                queue=auth_queue) == 1, 5, what="one auth RPC counted")

    assert namespaces(env.service, "demo-key").status_code == 200
    assert auth_rpcs(env) == before + 1  # within the TTL: no auth RPC

    def asked_again() -> bool:
        assert namespaces(env.service, "demo-key").status_code == 200
        return auth_rpcs(env) == before + 2

    wait_for(asked_again, AUTH_CACHE_TTL + 5, interval=0.25, what="the cached key to expire")
    assert time.monotonic() - started >= AUTH_CACHE_TTL
    wait_for(lambda: metric_sum(env.service.get("/metrics").text, "cluster_rpc_published_total",
                                queue=auth_queue) == 2, 5, what="two auth RPCs counted")


@pytest.mark.parametrize("key,status", [
    ("backend-error-key", 200),
    ("silent-auth-key", 200),
    ("err-rejected-key", 401),
    ("err-forbidden-key", 401),
    ("err-inactive-key", 401),
    ("err-500-key", 503),
])
def test_fallback_answers_when_the_broker_path_fails(env: SimpleNamespace, key: str,
                                                     status: int) -> None:
    before = auth_rpcs(env)
    started = time.monotonic()
    response = namespaces(env.service, key)
    elapsed = time.monotonic() - started
    assert response.status_code == status, response.text
    assert auth_rpcs(env) == before + 1  # the broker was asked first
    assert env.stub.count(key) == 1
    if status == 200:
        assert response.json()["agent_id"] == "demo-agent-1"
    else:
        assert response.json()["error"] == {401: "authentication_failed",
                                            503: "service_unavailable"}[status]
    if key == "silent-auth-key":
        assert elapsed >= AUTH_TIMEOUT - 0.1


def test_valid_false_never_asks_the_fallback(env: SimpleNamespace) -> None:
    response = namespaces(env.service, "wrong-key")
    assert response.status_code == 401
    assert env.stub.count("wrong-key") == 0


def test_a_licence_lapse_is_503_and_never_remembered_as_a_rejection(
        env: SimpleNamespace) -> None:
    for attempt in (1, 2):
        response = namespaces(env.service, "err-licence-key")
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "service_unavailable"
        assert response.headers["Retry-After"]
        assert env.stub.count("err-licence-key") == attempt  # asked again: nothing cached


def test_fallback_down_is_503_never_401(env: SimpleNamespace) -> None:
    env.stub.stop()
    response = namespaces(env.service, "err-down-key")
    assert response.status_code == 503, response.text
    assert response.json()["error"] == "service_unavailable"
    assert response.headers["Retry-After"]
