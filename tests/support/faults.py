"""What the fault tests share: HTTP outcomes, calls in parallel, reading the service's
metrics and logs, and reaching the broker directly.

Every helper talks to 127.0.0.1 only and never raises on an HTTP failure: a
thread reports through its :class:`Outcome`.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pika
import requests

from .prometheus import metric_sum, metrics_text
from .service import ServiceProcess, wait_for
from .tcp_proxy import TcpProxy


API_KEY = "demo-key"
HEALTHY_AGENT = "demo-agent-1"
RECOVERY_BOUND = 5.0          # seconds from "broker back" to "requests succeed"

# Fragments of the stand-in peers' namespace replies: none may ever reach the log.
# A result that is a plain string ("...: this is not json") is the agent's own failure
# message: logged, truncated, as the peer_error line's peer_message, like an `error` text.
BODY_FRAGMENTS = ("kube-node-lease", "kubernetes.io/metadata.name", "devpeers-simulated",
                  "kubesage.io/padding", "x" * 64, "cluster_info")


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


def through(proxy: TcpProxy) -> dict[str, str]:
    return {"RABBITMQ_HOST": "127.0.0.1", "RABBITMQ_PORT": str(proxy.port)}


def broker_admin(action: Callable[[Any], None]) -> None:
    """Run ``action(channel)`` on a connection of our own, straight to the broker."""
    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    try:
        action(connection.channel())
    finally:
        connection.close()
