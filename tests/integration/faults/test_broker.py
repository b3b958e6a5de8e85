"""Resilience (issue 5): the real service under gunicorn, with faults injected.

Every test runs the real gunicorn service on its own queues against the shared
RabbitMQ, with the stand-in peers. The broker itself is never stopped: a test
that needs the broker to go away points the service at a :class:`TcpProxy`
and closes (or freezes) the proxy, so only this service's connections suffer.

Run alone with ``pytest -m fault``. Every wait polls with a deadline; every
test carries its own time bound.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import pika
import pytest
import requests

from ..support.peers import delete_queues, start_peers
from ..support.prometheus import metric_sum
from ..support.service import ServiceProcess, queue_env, wait_for
from ..support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.fault, pytest.mark.rabbitmq, pytest.mark.gunicorn]

API_KEY = "demo-key"
HEALTHY_AGENT = "demo-agent-1"
RECOVERY_BOUND = 5.0          # seconds from "broker back" to "requests succeed"

# Fragments of the stand-in peers' namespace replies: none may ever reach the log.
BODY_FRAGMENTS = ("kube-node-lease", "kubernetes.io/metadata.name", "devpeers-simulated",
                  "this is not json", "kubesage.io/padding", "x" * 64, "cluster_info")


# -- HTTP helpers ---------------------------------------------------------------


@dataclass
class Outcome:
    """One HTTP exchange as the client saw it (status 0: no HTTP answer at all)."""

    status: int
    started: float
    ended: float
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    error: str = ""

    @property
    def elapsed(self) -> float:
        return self.ended - self.started

    @property
    def error_code(self) -> Any:
        return self.body.get("error") if isinstance(self.body, dict) else None


def call(service: ServiceProcess, path: str, params: Mapping[str, Any] | None = None,
         headers: Mapping[str, str] | None = None, timeout: float = 30,
         session: requests.Session | None = None) -> Outcome:
    """GET ``path``; never raises (threads report through the Outcome)."""
    started = time.monotonic()
    try:
        response = (session or requests).get(service.base_url + path, params=params,
                                             headers=headers, timeout=timeout)
    except requests.RequestException as error:
        return Outcome(0, started, time.monotonic(), error=type(error).__name__)
    ended = time.monotonic()
    try:
        body = response.json()
    except ValueError:
        body = None
    return Outcome(response.status_code, started, ended, body, response.headers)


def namespaces(service: ServiceProcess, agent_id: str, cluster_id: int | None = None,
               timeout: float = 30, session: requests.Session | None = None) -> Outcome:
    params: dict[str, Any] = {"agent_id": agent_id}
    if cluster_id is not None:
        params["cluster_id"] = cluster_id
    return call(service, "/namespaces", params, {"X-API-Key": API_KEY}, timeout, session)


def start_together(pool: ThreadPoolExecutor,
                   calls: Sequence[Callable[[], Outcome]]) -> list[Future[Outcome]]:
    """Submit ``calls`` so that they all leave at the same moment (a barrier)."""
    barrier = threading.Barrier(len(calls))

    def run(work: Callable[[], Outcome]) -> Outcome:
        barrier.wait(timeout=15)
        return work()

    return [pool.submit(run, work) for work in calls]


def run_together(calls: Sequence[Callable[[], Outcome]]) -> list[Outcome]:
    with ThreadPoolExecutor(len(calls)) as pool:
        return [future.result() for future in start_together(pool, calls)]


def summary(outcomes: Sequence[Outcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        label = f"{outcome.status} {outcome.error_code or outcome.error}".strip()
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{n} x {label}" for label, n in sorted(counts.items()))


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def assert_service_unavailable(outcome: Outcome) -> None:
    assert outcome.status == 503, outcome
    assert outcome.error_code == "service_unavailable", outcome.body
    assert outcome.headers.get("Retry-After"), outcome.headers


# -- observing the service ----------------------------------------------------------


def metrics_text(service: ServiceProcess) -> str:
    return requests.get(service.base_url + "/metrics", timeout=10).text


def metric(service: ServiceProcess, name: str, **labels: str) -> float:
    """The sum of the ``/metrics`` samples called ``name`` whose labels include ``labels``."""
    return metric_sum(metrics_text(service), name, **labels)


def all_connected(service: ServiceProcess, pids: set[int]) -> bool:
    """Whether ``cluster_broker_connected`` is 1 for every one of these workers."""
    text = metrics_text(service)
    return all(metric_sum(text, "cluster_broker_connected", pid=str(pid)) == 1.0
               for pid in pids)


def pids_with(service: ServiceProcess, **fields: Any) -> set[int]:
    """The worker pids that logged a record with all of ``fields``."""
    return {record["pid"] for record in service.json_logs()
            if all(record.get(k) == v for k, v in fields.items())}


def warm_auth(service: ServiceProcess, timeout: float = 15) -> set[int]:
    """Get ``API_KEY`` into every worker's auth cache, so auth cannot mask what a test checks."""
    pids = service.worker_pids()
    batch = 0

    def every_worker_validated() -> bool:
        nonlocal batch
        batch += 1
        run_together([partial(namespaces, service, HEALTHY_AGENT, 900_000 + 100 * batch + i)
                      for i in range(2 * len(pids))])
        return pids <= pids_with(service, event="auth", outcome="success")

    wait_for(every_worker_validated, timeout, interval=0.01,
             what=f"the API key cached by every worker {sorted(pids)}")
    return pids


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class BrokerLog:
    """What RabbitMQ logs from now on about the connections of named clients."""

    def __init__(self) -> None:
        self._offsets = {path: path.stat().st_size
                         for path in Path("/var/log/rabbitmq").glob("*.log")
                         if not path.name.endswith("_upgrade.log")} \
            if Path("/var/log/rabbitmq").is_dir() else {}

    @property
    def readable(self) -> bool:
        return bool(self._offsets)

    def text(self) -> str:
        chunks = []
        for path, offset in self._offsets.items():
            with open(path, "rb") as handle:
                handle.seek(offset)
                chunks.append(handle.read().decode(errors="replace"))
        return "".join(chunks)

    def closings(self, connection_name: str) -> list[str]:
        """Each 'closing AMQP connection' entry for that client name, with its reason line."""
        lines = self.text().splitlines()
        found = []
        for index, line in enumerate(lines):
            if "closing AMQP connection" in line and f" - {connection_name}," in line:
                entry = line
                if line.rstrip().endswith(":"):  # the reason is on the next line, same process
                    erlang_pid = re.search(r"<\d+\.\d+\.\d+>", line)
                    for follow in lines[index + 1:index + 5]:
                        if erlang_pid and erlang_pid.group(0) in follow:
                            entry += "\n" + follow
                            break
                found.append(entry)
        return found


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """An open TCP proxy to the broker; the service connects through it."""
    with TcpProxy() as running:
        yield running


def through(proxy: TcpProxy) -> dict[str, str]:
    return {"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": str(proxy.port)}


def broker_admin(action: Callable[[Any], None]) -> None:
    """Run ``action(channel)`` on a connection of our own, straight to the broker."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    try:
        action(connection.channel())
    finally:
        connection.close()


# -- 1 ------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
class TestBrokerDownAtStartUp:
    def test_workers_serve_probes_then_recover_without_restart(
            self, proxy: TcpProxy, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        proxy.close()
        service = service_factory(ready=False, **through(proxy))
        pids = service.worker_pids()
        assert len(pids) == 2
        wait_for(lambda: pids <= pids_with(service, event="broker_unreachable"), 10,
                 what="every worker's first connection attempt to fail")

        for _ in range(6):
            health = call(service, "/health")
            assert health.status == 200 and health.body["status"] == "healthy", health
            ready = call(service, "/ready")
            assert ready.status == 503, ready
            assert ready.body["status"] == "not_ready"
            assert ready.body["checks"] == {"rabbitmq": "unavailable"}
            refused = namespaces(service, HEALTHY_AGENT)
            assert_service_unavailable(refused)
            # Known to be unreachable: fail at once, never wait for a broker that is not there.
            assert refused.elapsed < 1.0, refused.elapsed

        proxy.open()
        opened = time.monotonic()
        wait_for(lambda: all_connected(service, pids) and
                 namespaces(service, HEALTHY_AGENT).status == 200,
                 RECOVERY_BOUND, what="every worker reconnected and serving")
        recovered = time.monotonic() - opened
        print(f"\nrecovered {recovered:.2f}s after the broker came back")
        outcomes = run_together([partial(namespaces, service, HEALTHY_AGENT, i)
                                 for i in range(8)])
        assert all(o.status == 200 for o in outcomes), summary(outcomes)
        assert all(call(service, "/ready").status == 200 for _ in range(6))
        assert service.worker_pids() == pids, "a worker was restarted"


# -- 2 ------------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
class TestBrokerConnectionLostUnderLoad:
    IN_FLIGHT = 50

    def test_in_flight_requests_fail_fast_and_service_recovers(
            self, proxy: TcpProxy, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        # The kernel does not spread connections evenly: the default threads let one
        # worker hold all 50 requests truly in flight.
        service = service_factory(WEB_CONCURRENCY="2", MAX_INFLIGHT_PER_AGENT="64",
                                  WEBSOCKET_TIMEOUT="10", **through(proxy))
        pids = warm_auth(service)

        with ThreadPoolExecutor(self.IN_FLIGHT) as pool:
            futures = start_together(pool, [
                partial(namespaces, service, "slow-5000-a", cluster_id=i, timeout=20)
                for i in range(self.IN_FLIGHT)])
            wait_for(lambda: metric(service, "cluster_rpc_inflight") >= self.IN_FLIGHT, 4,
                     what=f"{self.IN_FLIGHT} RPCs in flight")
            cut = time.monotonic()
            proxy.close()
            outcomes = [future.result() for future in futures]

        late = [round(o.ended - cut, 2) for o in outcomes if o.ended - cut > 1.0]
        print(f"\nafter the cut: {summary(outcomes)}; slowest ended "
              f"{max(o.ended for o in outcomes) - cut:.3f}s after the cut")
        assert all(o.status == 503 for o in outcomes), summary(outcomes)
        for outcome in outcomes:
            assert_service_unavailable(outcome)
        assert not late, f"requests ended more than 1 s after the cut: {late}"
        assert pids <= pids_with(service, event="broker_disconnected")

        proxy.open()
        wait_for(lambda: all_connected(service, pids), RECOVERY_BOUND,
                 what="every worker reconnected")
        outcomes = run_together([partial(namespaces, service, HEALTHY_AGENT, i)
                                 for i in range(8)])
        assert all(o.status == 200 for o in outcomes), summary(outcomes)
        assert service.worker_pids() == pids, "a worker was restarted"


# -- 2b: beyond the list: a silent partition (no reset, no FIN) -------------------------------


@pytest.mark.timeout(60)
class TestSilentNetworkPartition:
    HEARTBEAT, WEBSOCKET_TIMEOUT = 2, 2.0

    def test_requests_time_out_until_the_heartbeat_notices_then_recover(
            self, proxy: TcpProxy, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        service = service_factory(WEB_CONCURRENCY="1", RABBITMQ_HEARTBEAT=str(self.HEARTBEAT),
                                  WEBSOCKET_TIMEOUT=str(self.WEBSOCKET_TIMEOUT),
                                  **through(proxy))
        pids = warm_auth(service)
        # pika checks for received data every heartbeat + 5 s; two empty checks mean dead.
        detection_bound = 2 * (self.HEARTBEAT + 5) + self.WEBSOCKET_TIMEOUT + 1

        proxy.freeze()
        frozen = time.monotonic()
        during: list[Outcome] = []
        attempts = iter(range(10**6))

        def noticed() -> bool:
            during.append(namespaces(service, HEALTHY_AGENT, next(attempts), timeout=10))
            return call(service, "/ready").status == 503

        wait_for(noticed, detection_bound, interval=0.2, what="the worker to notice the partition")
        noticed_after = time.monotonic() - frozen
        print(f"\npartition noticed after {noticed_after:.1f}s; meanwhile {summary(during)}")
        # Never a hang, never a 500: a timeout at WEBSOCKET_TIMEOUT, or 503 once noticed.
        for outcome in during:
            assert outcome.status in (503, 504), outcome
            assert outcome.elapsed <= self.WEBSOCKET_TIMEOUT * 1.1 + 0.5, outcome.elapsed
        assert pids <= pids_with(service, event="broker_disconnected")
        assert_service_unavailable(namespaces(service, HEALTHY_AGENT))

        proxy.thaw()
        wait_for(lambda: namespaces(service, HEALTHY_AGENT, next(attempts)).status == 200,
                 RECOVERY_BOUND, what="the worker serving again after the partition")
        assert service.worker_pids() == pids, "the worker was restarted"


# -- 3 ------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
class TestSilentPeer:
    def test_times_out_at_websocket_timeout_and_leaves_nothing_pending(
            self, peers: Any, service_factory: Callable[..., ServiceProcess]) -> None:
        timeout = 1.0
        service = service_factory(WEB_CONCURRENCY="1", WEBSOCKET_TIMEOUT=str(timeout))
        warm_auth(service)

        outcomes = run_together([partial(namespaces, service, f"fault-silent-{i}", i)
                                 for i in range(4)])
        print(f"\nsilent peer: elapsed {[round(o.elapsed, 3) for o in outcomes]}")
        for outcome in outcomes:
            assert outcome.status == 504, outcome
            assert outcome.error_code == "agent_timeout"
            assert timeout <= outcome.elapsed <= timeout * 1.1 + 0.3, outcome.elapsed
        assert metric(service, "cluster_rpc_inflight") == 0
        assert metric(service, "cluster_rpc_duration_seconds_count", outcome="timeout") >= 4

    def test_many_timeouts_leave_worker_memory_flat(
            self, peers: Any, service_factory: Callable[..., ServiceProcess]) -> None:
        clients, warmup, measured = 12, 300, 2000
        service = service_factory(WEB_CONCURRENCY="1", GUNICORN_THREADS="16",
                                  MAX_INFLIGHT_RPCS="16", MAX_INFLIGHT_PER_AGENT="16",
                                  WEBSOCKET_TIMEOUT="0.05")
        (worker,) = warm_auth(service)
        tickets = iter(range(10**9))
        lock = threading.Lock()

        def storm(total: int) -> list[int]:
            """``total`` requests to silent agents from ``clients`` keep-alive clients."""
            issued = 0
            statuses: list[int] = []

            def client() -> None:
                nonlocal issued
                with requests.Session() as session:
                    while True:
                        with lock:
                            if issued >= total:
                                return
                            issued += 1
                            n = next(tickets)
                        # a distinct agent per request: no single flight, and the per-agent
                        # bulkheads must be forgotten once idle
                        status = namespaces(service, f"fault-silent-{n}", n, 10, session).status
                        with lock:
                            statuses.append(status)

            threads = [threading.Thread(target=client) for _ in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            return statuses

        warm = storm(warmup)
        assert set(warm) == {504}, set(warm)
        before = rss_kib(worker)
        started = time.monotonic()
        statuses = storm(measured)
        took = time.monotonic() - started
        after = rss_kib(worker)
        growth = (after - before) / 1024
        print(f"\n{measured} timeouts in {took:.1f}s; worker RSS {before / 1024:.1f} MiB -> "
              f"{after / 1024:.1f} MiB ({growth:+.2f} MiB)")
        assert len(statuses) == measured and set(statuses) == {504}, \
            {s: statuses.count(s) for s in set(statuses)}
        assert took < 60
        assert growth < 10, f"worker RSS grew by {growth:.1f} MiB over {measured} timeouts"
        wait_for(lambda: metric(service, "cluster_rpc_inflight") == 0, 5,
                 what="no RPC pending")
        assert metric(service, "cluster_rpc_duration_seconds_count",
                      outcome="timeout") >= warmup + measured


# -- 4 ------------------------------------------------------------------------------------------


@dataclass
class BrokenPeerService:
    service: ServiceProcess
    peers: Any
    pids: set[int]
    timeout: float


@pytest.fixture(scope="class")
def broken_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokenPeerService]:
    """One service and peers shared by the broken-peer tests (each fault is a quick request)."""
    prefix = f"t-{uuid.uuid4().hex[:10]}-"
    peers = start_peers(prefix)
    timeout = 1.0
    service = ServiceProcess(tmp_path_factory.mktemp("broken-peer"),
                             {**queue_env(prefix), "WEB_CONCURRENCY": "1",
                              "WEBSOCKET_TIMEOUT": str(timeout)})
    try:
        service.start()
        yield BrokenPeerService(service, peers, warm_auth(service), timeout)
    finally:
        service.stop()
        peers.stop()
        delete_queues(prefix)


def assert_still_serving(broken: BrokenPeerService) -> None:
    normal = namespaces(broken.service, HEALTHY_AGENT)
    assert normal.status == 200, normal
    assert broken.service.worker_pids() == broken.pids, "the worker was restarted"


@pytest.mark.timeout(60)
class TestBrokenPeer:
    @pytest.mark.parametrize("agent_id", [
        "fault-malformed-1",          # body is not JSON
        "fault-wrong-shape-1",        # result without namespaces
        "fault-wrong-shape-list-1",   # body is a JSON list (matched by correlation_id)
        "fault-result-not-json-1",    # result is a string that is not JSON
        "fault-huge-1",  # ~5 MB, over MAX_REPLY_BYTES: dropped unparsed, 502
    ])
    def test_invalid_reply_is_an_agent_error(self, broken_peer: BrokenPeerService,
                                             agent_id: str) -> None:
        outcome = namespaces(broken_peer.service, agent_id)
        assert outcome.status == 502, (outcome.status, outcome.error_code)
        assert outcome.error_code == "agent_error"
        assert outcome.body["message"].startswith("Failed to communicate with agent")
        assert_still_serving(broken_peer)

    def test_reply_without_request_id_times_out(self, broken_peer: BrokenPeerService) -> None:
        outcome = namespaces(broken_peer.service, "fault-no-request-id-1")
        assert outcome.status == 504, outcome
        assert outcome.error_code == "agent_timeout"
        assert broken_peer.timeout <= outcome.elapsed <= broken_peer.timeout * 1.1 + 0.3
        wait_for(lambda: metric(broken_peer.service, "cluster_rpc_replies_dropped_total",
                                reason="unroutable") >= 1, 5, what="the reply counted as dropped")
        assert_still_serving(broken_peer)

    def test_duplicate_reply_is_harmless(self, broken_peer: BrokenPeerService) -> None:
        # contract §2: "Duplicate replies are harmless"; the second one is dropped.
        dropped = metric(broken_peer.service, "cluster_rpc_replies_dropped_total")
        outcome = namespaces(broken_peer.service, "fault-duplicate-1")
        assert outcome.status == 200, outcome
        assert "team-fault-duplicate-1" in {ns["name"] for ns in outcome.body["namespaces"]}
        wait_for(lambda: metric(broken_peer.service, "cluster_rpc_replies_dropped_total")
                 > dropped, 5, what="the duplicate counted as dropped")
        assert_still_serving(broken_peer)

    def test_nothing_logged_at_error_nor_any_reply_body(
            self, broken_peer: BrokenPeerService) -> None:
        agents = ["fault-malformed-2", "fault-wrong-shape-2", "fault-wrong-shape-list-2",
                  "fault-result-not-json-2", "fault-no-request-id-2", "fault-huge-2",
                  "fault-duplicate-2", "fault-error-2"]
        outcomes = run_together([partial(namespaces, broken_peer.service, a) for a in agents])
        assert all(o.status in (200, 502, 504) for o in outcomes), summary(outcomes)
        assert_still_serving(broken_peer)
        log = broken_peer.service.logs()
        errors = [line for line in log.splitlines()
                  if '"level": "ERROR"' in line or '"level": "CRITICAL"' in line
                  or "[ERROR]" in line or "[CRITICAL]" in line or "Traceback" in line]
        assert not errors, "\n".join(line[:300] for line in errors)
        leaked = [fragment[:20] for fragment in BODY_FRAGMENTS if fragment in log]
        assert not leaked, f"reply body fragments in the log: {leaked}"


# -- 5 ------------------------------------------------------------------------------------------


# Saturation under slow and hung agents: tests/integration/test_slow_agents.py.


# -- 6 ------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
class TestGracefulShutdown:
    def test_sigterm_finishes_in_flight_requests_and_closes_broker_cleanly(
            self, peers: Any, service_factory: Callable[..., ServiceProcess]) -> None:
        auth_timeout, websocket_timeout = 2, 5
        graceful_timeout = auth_timeout + websocket_timeout + 5   # as gunicorn.conf.py derives it
        service = service_factory(WEB_CONCURRENCY="2", AUTH_TIMEOUT=str(auth_timeout),
                                  WEBSOCKET_TIMEOUT=str(websocket_timeout))
        pids = warm_auth(service)
        broker_log = BrokerLog()
        in_flight = 6

        with ThreadPoolExecutor(in_flight) as pool:
            # distinct agents: the per-agent bound (3) must not refuse any of them
            futures = start_together(pool, [partial(namespaces, service, f"slow-1500-g{i}")
                                            for i in range(in_flight)])
            wait_for(lambda: metric(service, "cluster_rpc_inflight") >= in_flight, 1.2,
                     interval=0.02, what=f"{in_flight} RPCs in flight")
            terminated = time.monotonic()
            service.signal(signal.SIGTERM)
            outcomes = [future.result() for future in futures]
        assert service.proc is not None
        code = service.proc.wait(graceful_timeout + 5)
        exited = time.monotonic() - terminated
        print(f"\nSIGTERM with {in_flight} in flight: {summary(outcomes)}; "
              f"master exited after {exited:.2f}s (graceful_timeout {graceful_timeout}s)")

        assert all(o.status == 200 for o in outcomes), summary(outcomes)
        assert all(o.ended > terminated for o in outcomes), "the requests were not in flight"
        assert code == 0
        assert exited < graceful_timeout
        assert pids <= pids_with(service, event="broker_closed"), service.logs()[-3000:]
        assert not pids_with(service, event="broker_disconnected")

        if broker_log.readable:
            host = socket.gethostname()
            names = {pid: f"cluster_service {host} pid {pid}" for pid in pids}
            wait_for(lambda: all(broker_log.closings(name) for name in names.values()), 10,
                     what="the broker logging each worker's connection closing")
            for name in names.values():
                for entry in broker_log.closings(name):
                    assert "unexpectedly" not in entry and "abrupt" not in entry, entry
                    assert "[info]" in entry, entry


# -- 7 ------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
class TestRequestStormOnOneAgent:
    def test_identical_requests_share_one_rpc(
            self, prefix: str, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        storm, agent = 50, "slow-500-storm"
        service = service_factory(WEB_CONCURRENCY="1", GUNICORN_THREADS="64",
                                  MAX_INFLIGHT_RPCS="60", WEBSOCKET_TIMEOUT="10")
        warm_auth(service)
        queue = queue_env(prefix)["NAMESPACE_REQUEST_QUEUE"]
        consumed = peers.counters["requests_namespaces"]
        published = metric(service, "cluster_rpc_published_total", queue=queue)

        outcomes = run_together([partial(namespaces, service, agent, 42)] * storm)

        rpcs = metric(service, "cluster_rpc_published_total", queue=queue) - published
        seen_by_peer = peers.counters["requests_namespaces"] - consumed
        print(f"\n{storm} identical requests: {summary(outcomes)}; {rpcs:g} namespace RPCs "
              f"published, {seen_by_peer} seen by the peer")
        assert all(o.status == 200 for o in outcomes), summary(outcomes)
        for outcome in outcomes:
            assert outcome.body["agent_id"] == agent and outcome.body["cluster_id"] == 42
            assert f"team-{agent}" in {ns["name"] for ns in outcome.body["namespaces"]}
        assert 1 <= rpcs <= 5
        assert seen_by_peer == rpcs


# -- 8: beyond the list: the connection stays up, but the channel or a consumer is gone -----


@pytest.mark.timeout(60)
class TestChannelLostWhileConnectionStaysUp:
    """The broker can close a channel, or cancel a consumer, without closing the connection.

    A worker in that state cannot serve cluster calls; it must notice, say so
    (log, ``/ready``) and reopen, as it does when the whole connection drops.
    """

    def test_channel_closed_by_broker_is_noticed_and_reopened(
            self, prefix: str, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        env = queue_env(prefix)
        service = service_factory(WEB_CONCURRENCY="1", WEBSOCKET_TIMEOUT="1")
        warm_auth(service)

        def provoke(channel: Any) -> None:
            # A reply nobody waits for, on a fixed results queue, is forwarded to the reply
            # exchange; with the exchange gone, the broker closes the channel (404).
            channel.exchange_delete(env["REPLY_EXCHANGE"])
            channel.basic_publish("", env["NAMESPACE_RESULT_QUEUE"],
                                  json.dumps({"request_id": str(uuid.uuid4())}))

        broker_admin(provoke)
        wait_for(lambda: metric(service, "cluster_rpc_replies_rerouted_total") >= 1, 5,
                 what="the stray reply forwarded to the missing exchange")
        attempts = iter(range(10**6))
        wait_for(lambda: namespaces(service, HEALTHY_AGENT, next(attempts)).status == 200
                 and call(service, "/ready").status == 200, RECOVERY_BOUND,
                 what="the worker serving again on a new channel")
        assert pids_with(service, event="broker_disconnected"), "the loss was never logged"

    def test_consumer_cancelled_by_broker_is_noticed_and_resumed(
            self, prefix: str, peers: Any,
            service_factory: Callable[..., ServiceProcess]) -> None:
        env = queue_env(prefix)
        service = service_factory(WEB_CONCURRENCY="1", WEBSOCKET_TIMEOUT="1")
        warm_auth(service)
        peers.set_reply_style("results")   # the legacy peers answer on the fixed queue
        assert namespaces(service, HEALTHY_AGENT, 1).status == 200

        broker_admin(lambda channel: channel.queue_delete(env["NAMESPACE_RESULT_QUEUE"]))
        attempts = iter(range(10, 10**6))
        wait_for(lambda: namespaces(service, HEALTHY_AGENT, next(attempts)).status == 200,
                 RECOVERY_BOUND, what="the results queue declared and consumed again")
        assert pids_with(service, event="broker_disconnected"), "the loss was never logged"
