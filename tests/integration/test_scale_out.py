"""Scale out: 2 replicas x 3 workers with peers that answer on the fixed queues.

Real gunicorn, RabbitMQ and redis-server (a private one per test, so that a
test may stop it). Every HTTP call opens its own connection, so any worker of
the replica may accept it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess  # nosec B404 - the test runs the operator command
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest
import requests

from ..support.peers import start_peers, wrong_namespaces
from ..support.prometheus import metric, settled_metric
from ..support.redis_server import REDIS_SERVER, RedisServer
from bench.spread import connections_per_worker

from ..support.service import REPO, ServiceProcess, queue_env, wait_for

pytestmark = [pytest.mark.rabbitmq, pytest.mark.gunicorn]

needs_redis = [pytest.mark.redis,
               pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")]

SECRET = "scale-out-test-secret-0123"
USER_ID = 77


def fleet_metric(replicas: list[ServiceProcess], name: str, **labels: str) -> float:
    return sum(settled_metric(r, name, **labels) for r in replicas)


def get(service: ServiceProcess, agent_id: str, key: str, timeout: float = 30,
        **params: Any) -> requests.Response:
    """A request on a connection of its own (any worker may accept it)."""
    return requests.get(f"{service.base_url}/namespaces", timeout=timeout,
                        params={"agent_id": agent_id, **params},
                        headers={"X-API-Key": key, "Connection": "close"})


def deliveries_per_rpc(replicas: list[ServiceProcess]) -> float:
    """Broker deliveries to our consumers (own, fixed and relayed queues, plus forwards the
    broker returned because their owner was gone) per RPC published."""
    deliveries = (fleet_metric(replicas, "cluster_rpc_replies_received_total")
                  + fleet_metric(replicas, "cluster_rpc_replies_dropped_total",
                                 reason="owner_gone"))
    return deliveries / fleet_metric(replicas, "cluster_rpc_published_total")


def pids_serving(service: ServiceProcess, status: int, key_fp: str | None = None) -> set[int]:
    return {line["pid"] for line in service.json_logs()
            if line.get("event") == "access" and line.get("status") == status
            and (key_fp is None or line.get("key_fp") == key_fp)}


@pytest.fixture
def fixed_queue_peers(prefix: str) -> Iterator[Any]:
    """Stand-in peers that, like the existing ones, answer on the fixed results queues."""
    peers = start_peers(prefix, reply_style="results")
    yield peers
    peers.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def two_by_three(service_factory: Callable[..., ServiceProcess], **env: str) -> list[
        ServiceProcess]:
    env = {"WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "8", **env}
    return [service_factory(**env) for _ in range(2)]


class TestTargetedForwarding:
    def test_200_concurrent_requests_over_20_agents_each_get_their_own_agents_namespaces(
            self, service_factory: Callable[..., ServiceProcess],
            fixed_queue_peers: Any) -> None:
        replicas = two_by_three(service_factory, WEBSOCKET_TIMEOUT="15")

        def one(n: int) -> str | None:
            agent_id = f"demo-agent-{n % 20 + 1}"
            return wrong_namespaces(get(replicas[n % 2], agent_id, "demo-key", cluster_id=n),
                                    agent_id, n)

        with ThreadPoolExecutor(max_workers=32) as pool:
            errors = [e for e in pool.map(one, range(200)) if e is not None]
        assert errors == [], errors[:3]
        assert fleet_metric(replicas, "cluster_rpc_replies_dropped_total",
                            reason="not_owner") == 0
        assert fleet_metric(replicas, "cluster_rpc_replies_rerouted_total",
                            route="broadcast") == 0
        # Six workers share the fixed queues: most replies are taken by a stranger first...
        assert fleet_metric(replicas, "cluster_rpc_replies_rerouted_total", route="direct") > 0
        # ...and cost one more delivery, not one per worker (the fanout cost 5.4-5.6 here).
        assert deliveries_per_rpc(replicas) <= 2.0
        assert sum(len(pids_serving(r, 200)) for r in replicas) >= 4

    def test_a_worker_killed_with_requests_in_flight_costs_only_its_own_requests(
            self, service_factory: Callable[..., ServiceProcess],
            fixed_queue_peers: Any) -> None:
        # Room for all 12 slow requests of a replica in any one worker: this test is
        # about routing, not about the saturation bound.
        replicas = two_by_three(service_factory, WEBSOCKET_TIMEOUT="10", GUNICORN_THREADS="16",
                                MAX_INFLIGHT_RPCS="16", MAX_INFLIGHT_PER_AGENT="16")
        for replica in replicas:  # warm each worker's key cache a little
            for n in range(6):
                assert get(replica, f"demo-agent-{n + 1}", "demo-key").status_code == 200
        results: dict[int, requests.Response | BaseException] = {}

        def one(n: int) -> None:
            try:
                results[n] = get(replicas[n % 2], f"slow-2500-k{n}", "demo-key", timeout=20)
            except requests.RequestException as error:
                results[n] = error

        threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in range(24)]
        for thread in threads:
            thread.start()
        victim = wait_for(lambda: busiest_worker(replicas[0], minimum=2), 10,
                          what="a worker of replica 0 with two requests in flight")
        os.kill(victim, signal.SIGKILL)
        for thread in threads:
            thread.join(30)
        failed = [n for n, r in results.items() if not isinstance(r, requests.Response)]
        answered = {n: r for n, r in results.items() if isinstance(r, requests.Response)}
        assert len(results) == 24
        assert 1 <= len(failed) < 12  # only the requests the dead worker held
        for n, response in answered.items():
            assert response.status_code == 200, response.text
            assert f"team-slow-2500-k{n}" in [ns["name"] for ns in response.json()["namespaces"]]
        # The dead worker's replies were taken by the survivors, forwarded to its queue
        # (gone with its connection), and returned by the broker.
        wait_for(lambda: fleet_metric(replicas, "cluster_rpc_replies_dropped_total",
                                      reason="owner_gone") >= 1, 10,
                 what="the dead worker's replies to come back from the broker")
        assert fleet_metric(replicas, "cluster_rpc_replies_dropped_total",
                            reason="not_owner") == 0


def busiest_worker(service: ServiceProcess, minimum: int) -> int | None:
    """The pid of a worker holding at least ``minimum`` client connections, if any."""
    held = connections_per_worker(service.worker_pids(), service.port)
    best = max(held, key=held.__getitem__, default=None)
    return best if best is not None and held[best] >= minimum else None


class TestFleetWideAuthCache:
    pytestmark = needs_redis

    @pytest.fixture
    def fleet(self, prefix: str, service_factory: Callable[..., ServiceProcess],
              redis_server: RedisServer) -> Iterator[SimpleNamespace]:
        """2 x 3 with the shared cache, and fixed-queue peers that know one fresh key."""
        key = f"fleet-{uuid.uuid4().hex}"
        peers = start_peers(prefix, reply_style="results", api_keys={key: user(USER_ID)})
        try:
            replicas = two_by_three(service_factory, AUTH_CACHE_TTL="300",
                                    AUTH_CACHE_URI=redis_server.url, AUTH_CACHE_SECRET=SECRET)
            yield SimpleNamespace(key=key, key_fp=fingerprint(key), peers=peers,
                                  replicas=replicas, redis=redis_server)
        finally:
            peers.stop()

    def test_one_key_across_2x3_costs_at_most_two_auth_rpcs(self, fleet: SimpleNamespace) -> None:
        key, replicas = fleet.key, fleet.replicas
        assert get(replicas[0], "demo-agent-1", key).status_code == 200
        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(lambda n: get(replicas[n % 2], "demo-agent-2",
                                                   key).status_code, range(90)))
        assert statuses == [200] * 90
        assert fleet.peers.counters["requests_auth"] <= 2
        assert sum(len(pids_serving(r, 200, fleet.key_fp)) for r in replicas) >= 4
        assert fleet_metric(replicas, "cluster_auth_shared_cache_total", outcome="hit") >= 3
        names = [n.decode() for n in fleet.redis.client().scan_iter()]
        assert names and not any(key in n or sha256(key) in n for n in names)

    def test_after_user_revoked_every_worker_asks_again_within_a_second(
            self, prefix: str, fleet: SimpleNamespace) -> None:
        key, key_fp, replicas = fleet.key, fleet.key_fp, fleet.replicas
        for replica in replicas:  # every worker has the key in its own cache
            wait_for(lambda r=replica: len(pids_serving(r, 200, key_fp)) == 3
                     if get(r, "demo-agent-1", key).status_code == 200 else False,
                     30, interval=0, what="all three workers to serve the key")
        del fleet.peers.config.api_keys[key]  # the User Service now rejects it...
        assert {get(r, "demo-agent-1", key).status_code for r in replicas} == {200}
        # ...but every worker would keep accepting it for AUTH_CACHE_TTL (300 s).
        events_before = sum(count_auth_events(r) for r in replicas)
        result = subprocess.run(  # nosec B603 - our own command
            [sys.executable, "-m", "cluster_service.revoke", "--user-id", str(USER_ID)],
            cwd=REPO, env={**os.environ, **queue_env(prefix), "RABBITMQ_HOST": "127.0.0.1"},
            capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert "user_revoked" in result.stdout and key not in result.stdout
        wait_for(lambda: sum(count_auth_events(r) for r in replicas) == events_before + 6,
                 1.0, interval=0.02, what="all six workers to apply the event")
        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = list(pool.map(lambda n: get(replicas[n % 2], "demo-agent-1",
                                                   key).status_code, range(36)))
        assert statuses == [401] * 36
        assert sum(len(pids_serving(r, 401, key_fp)) for r in replicas) >= 4
        assert not any(n.startswith(b"cluster_service:auth:user:")
                       for n in fleet.redis.client().scan_iter())

    def test_redis_stopped_mid_run_the_service_keeps_answering_and_recovers(
            self, prefix: str, service_factory: Callable[..., ServiceProcess],
            redis_server: RedisServer) -> None:
        keys = {name: f"{name}-{uuid.uuid4().hex}" for name in ("before", "during")}
        peers = start_peers(prefix, reply_style="results",
                            api_keys={k: user(80 + i) for i, k in enumerate(keys.values())})
        try:
            [service] = [service_factory(WEB_CONCURRENCY="2", GUNICORN_THREADS="4",
                                         AUTH_CACHE_TTL="300", AUTH_CACHE_URI=redis_server.url,
                                         AUTH_CACHE_SECRET=SECRET)]
            assert get(service, "demo-agent-1", keys["before"]).status_code == 200
            redis_server.kill()
            for n in range(12):
                for name in ("before", "during"):
                    response = get(service, f"demo-agent-{n + 1}", keys[name], timeout=10)
                    assert response.status_code == 200, response.text
            down = [line for line in service.json_logs()
                    if line.get("event") == "auth_cache_unavailable"]
            assert 1 <= len(down) <= 2  # once per worker
            redis_server.start()

            def served_with_a_new_key() -> bool:
                # A key no worker has seen yet, so the worker must look in Redis again.
                key = f"after-{uuid.uuid4().hex}"
                peers.config.api_keys[key] = user(90)
                return get(service, "demo-agent-1", key).status_code == 200 and any(
                    line.get("event") == "auth_cache_recovered" for line in service.json_logs())

            wait_for(served_with_a_new_key, 15, interval=0.2, what="the service back on Redis")
            wait_for(lambda: list(redis_server.client().scan_iter(
                match="cluster_service:auth:key:*")), 10, what="entries written to Redis again")
        finally:
            peers.stop()


def count_auth_events(service: ServiceProcess) -> float:
    return metric(service, "cluster_auth_events_total", event="user_revoked")


def user(user_id: int) -> dict[str, Any]:
    return {"id": user_id, "username": f"u{user_id}", "email": f"u{user_id}@example.com",
            "roles": None, "is_active": True}


def fingerprint(key: str) -> str:
    return sha256(key)[:12]


def sha256(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
