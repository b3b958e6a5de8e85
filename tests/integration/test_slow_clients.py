"""Slowloris against the real gunicorn with the real gunicorn.conf.py, plain and TLS.

Hundreds of sockets that send half a request (or half a TLS handshake) and
then nothing must not stop the probes, and the server must close them within
``HEADER_READ_TIMEOUT``. The stock gthread worker held one thread per such
socket for good: 16 of them (2 workers x 8 threads) stopped ``/health``.
Bounded: a fixed number of sockets, every wait with a deadline; loopback only.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests
from urllib3.exceptions import InsecureRequestWarning

from ..support.service import ServiceProcess, queue_env
from .test_gunicorn import self_signed_cert

pytestmark = pytest.mark.gunicorn

TIMEOUT = 3.0  # HEADER_READ_TIMEOUT for these tests
SLACK = 2.5  # the worker checks deadlines about once a second; the machine is busy
HALF_HEADER = b"GET /api/v3.0/cluster/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
HALF_CLIENT_HELLO = b"\x16\x03\x01\x02\x00"  # a TLS record header promising 512 bytes


def open_sockets(port: int, count: int, first_bytes: bytes) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(first_bytes)
        sockets.append(sock)
    return sockets


def half_header_over_tls(port: int, count: int) -> list[ssl.SSLSocket]:
    """Sockets that complete the TLS handshake, then send half a request."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sockets = []
    for _ in range(count):
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        tls = context.wrap_socket(raw, server_hostname="localhost")
        tls.sendall(HALF_HEADER)
        sockets.append(tls)
    return sockets


def poll_health(service: ServiceProcess, rounds: int) -> list[int]:
    """``rounds`` probes, each on a new connection, each allowed 3 s like a kubelet's."""
    statuses = []
    for _ in range(rounds):
        try:
            response = service.get("/health", timeout=3, verify=False,
                                   headers={"Connection": "close"})
            statuses.append(response.status_code)
        except requests.RequestException as error:
            statuses.append(type(error).__name__)  # type: ignore[arg-type]
    return statuses


def wait_all_closed_by_server(sockets: list[socket.socket], deadline: float) -> int:
    """Wait until the server closed every socket (EOF or reset); return how many it did."""
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    closed = 0
    try:
        while closed < len(sockets) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                sock = key.fileobj
                try:
                    data = sock.recv(4096)  # type: ignore[union-attr]
                except (ssl.SSLWantReadError, BlockingIOError):
                    continue
                except (ConnectionResetError, ssl.SSLError, OSError):
                    data = b""
                if not data:
                    selector.unregister(sock)
                    closed += 1
    finally:
        selector.close()
    return closed


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path)


@pytest.fixture
def quiet_tls() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)  # only our own self-signed probes
        yield


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        try:
            sock.close()
        except OSError:
            pass


class TestSlowloris:
    def test_idle_half_headers_hold_no_thread_and_are_closed(
            self, service_factory: Callable[..., ServiceProcess]) -> None:
        service = service_factory(HEADER_READ_TIMEOUT=str(TIMEOUT))
        opened = time.monotonic()
        sockets = open_sockets(service.port, 300, HALF_HEADER)
        try:
            assert poll_health(service, 10) == [200] * 10
            closed = wait_all_closed_by_server(sockets, opened + TIMEOUT + SLACK + 5)
            took = time.monotonic() - opened
            assert closed == len(sockets), f"{len(sockets) - closed} still open after {took:.1f}s"
            assert took <= TIMEOUT + SLACK + 5
            assert poll_health(service, 3) == [200] * 3
        finally:
            close_all(sockets)

    def test_a_slow_drip_does_not_extend_the_deadline(
            self, service_factory: Callable[..., ServiceProcess]) -> None:
        """A byte every 0.5 s keeps the socket busy, never its headers complete: closed."""
        service = service_factory(HEADER_READ_TIMEOUT=str(TIMEOUT))
        sock = socket.create_connection(("127.0.0.1", service.port), timeout=5)
        try:
            opened = time.monotonic()
            sock.sendall(b"GET /api/v3.0/cluster/health HTTP/1.1\r\n")
            sock.settimeout(0.5)
            closed_after = None
            while time.monotonic() - opened < TIMEOUT + SLACK + 5:
                try:
                    if sock.recv(4096) == b"":
                        closed_after = time.monotonic() - opened
                        break
                except socket.timeout:
                    try:
                        sock.sendall(b"X")
                    except OSError:
                        closed_after = time.monotonic() - opened
                        break
                except OSError:
                    closed_after = time.monotonic() - opened
                    break
            assert closed_after is not None and closed_after <= TIMEOUT + SLACK
        finally:
            sock.close()

    def test_complete_requests_on_kept_alive_connections_still_work(
            self, service_factory: Callable[..., ServiceProcess]) -> None:
        service = service_factory(HEADER_READ_TIMEOUT=str(TIMEOUT))
        with requests.Session() as session:  # one connection, reused
            url = service.base_url + "/health"
            assert [session.get(url, timeout=5).status_code for _ in range(5)] == [200] * 5
        # two pipelined requests in one send are both answered
        sock = socket.create_connection(("127.0.0.1", service.port), timeout=5)
        try:
            request = b"GET /api/v3.0/cluster/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            sock.sendall(request + request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
            received = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
            assert received.count(b"HTTP/1.1 200 OK") == 2
        finally:
            sock.close()


class TestSlowlorisOverTls:
    def test_half_handshakes_and_half_headers_hold_no_thread(
            self, tmp_path: Path, prefix: str, tls_files: tuple[Path, Path],
            quiet_tls: None) -> None:
        cert, key = tls_files
        service = ServiceProcess(tmp_path, {**queue_env(prefix), "USE_SSL": "true",
                                            "SSL_CERTFILE": str(cert), "SSL_KEYFILE": str(key),
                                            "HEADER_READ_TIMEOUT": str(TIMEOUT)},
                                 scheme="https")
        sockets: list[socket.socket] = []
        try:
            service.start(ready=False)
            opened = time.monotonic()
            sockets += open_sockets(service.port, 200, HALF_CLIENT_HELLO)
            sockets += half_header_over_tls(service.port, 100)
            assert poll_health(service, 10) == [200] * 10
            closed = wait_all_closed_by_server(sockets, opened + TIMEOUT + SLACK + 8)
            took = time.monotonic() - opened
            assert closed == len(sockets), f"{len(sockets) - closed} still open after {took:.1f}s"
            assert poll_health(service, 3) == [200] * 3
        finally:
            close_all(sockets)
            service.stop()
