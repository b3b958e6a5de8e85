"""Keep-alive connections spread evenly over the workers (cluster_service/server/spread.py).

Real gunicorn with the real gunicorn.conf.py, 2 workers. Each round opens 32
keep-alive connections at once, the way a load generator, nginx or a Kubernetes
Service opens its pool, while the workers are busy serving the connections of
the round; mid-round, /proc says which worker holds each connection. With stock
gthread one worker took 25-32 of 32 in most rounds; with one SO_REUSEPORT socket
per worker (a hash of the client port) about one round in five went over 60 %.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable

import pytest

from bench.spread import connections_per_worker

from ..support.service import ServiceProcess, wait_for

pytestmark = pytest.mark.gunicorn

CONNECTIONS = 32
ROUNDS = 6
BOUND = 0.6  # no worker may hold more than this share of the connections
REQUEST = b"GET /api/v3.0/cluster/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def keep_busy(port: int, opened: threading.Barrier, stop: threading.Event) -> None:
    """One keep-alive client: connect when the others do, then ask /health until told."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        opened.wait(10)
        while not stop.is_set():
            sock.sendall(REQUEST)
            received = b""
            while b"}" not in received:  # one small JSON body per response
                chunk = sock.recv(65536)
                assert chunk, "the service closed a keep-alive connection"
                received += chunk


def one_round(service: ServiceProcess) -> list[int]:
    """Connections per worker, mid-round, busiest first."""
    opened = threading.Barrier(CONNECTIONS + 1)
    stop = threading.Event()
    clients = [threading.Thread(target=keep_busy, args=(service.port, opened, stop), daemon=True)
               for _ in range(CONNECTIONS)]
    for client in clients:
        client.start()
    try:
        opened.wait(10)
        counts = wait_for(lambda: _all_open(service), 10, what="every connection accepted")
    finally:
        stop.set()
        for client in clients:
            client.join(10)
    return counts


def fresh_round(service: ServiceProcess) -> list[int]:
    """A round that starts once the previous round's connections are all closed."""
    wait_for(lambda: not any(connections_per_worker(service.worker_pids(),
                                                    service.port).values()),
             10, what="the previous round's connections closed")
    return one_round(service)


def _all_open(service: ServiceProcess) -> list[int] | None:
    counts = sorted(connections_per_worker(service.worker_pids(), service.port).values(),
                    reverse=True)
    return counts if sum(counts) == CONNECTIONS else None


def test_keep_alive_connections_spread_evenly_over_workers(
        service_factory: Callable[..., ServiceProcess]) -> None:
    service = service_factory(WEB_CONCURRENCY="2", GUNICORN_THREADS="16")
    wait_for(lambda: len(service.worker_pids()) == 2, 20, what="two workers")
    # A worker still booting accepts nothing and reports nothing, so its sibling takes
    # everything: wait until both have served a connection of their own.
    wait_for(lambda: all(fresh_round(service)), 20, what="both workers serving")
    rounds = [fresh_round(service) for _ in range(ROUNDS)]
    worst = max(counts[0] / CONNECTIONS for counts in rounds)
    assert worst <= BOUND, f"connections per worker, each round: {rounds}"
