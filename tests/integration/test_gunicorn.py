"""The real service under the real gunicorn.conf.py: HTTP, HTTPS, X-Request-ID, clean SIGTERM.

Every wait polls with a deadline (``ServiceProcess.start``, ``wait``); nothing
sleeps for a fixed time.
"""

from __future__ import annotations

import re
import subprocess  # nosec B404 - the test runs openssl and our own gunicorn
import uuid
import warnings
from pathlib import Path
from typing import Callable

import pytest
import requests
from urllib3.exceptions import InsecureRequestWarning

from ..support.service import ServiceProcess, queue_env

pytestmark = pytest.mark.gunicorn

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
STOP_DEADLINE = 30.0  # seconds; idle workers exit far sooner


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 / localhost, valid one day."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(  # nosec B603 B607 - fixed argv
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert, key


def assert_healthy(response: requests.Response) -> None:
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["status", "service", "timestamp", "version"]
    assert (body["status"], body["service"], body["version"]) == (
        "healthy", "cluster_service", "1.0.0")
    assert TIMESTAMP.match(body["timestamp"])


def assert_request_ids(service: ServiceProcess, **kwargs: object) -> None:
    """A sane id is echoed; without one, the service makes a uuid4."""
    sent = f"it-{uuid.uuid4().hex}"
    echoed = service.get("/health", headers={"X-Request-ID": sent}, **kwargs)
    assert echoed.headers["X-Request-ID"] == sent
    generated = service.get("/health", **kwargs).headers["X-Request-ID"]
    assert uuid.UUID(generated).version == 4
    missing = service.get("/no-such-route", headers={"X-Request-ID": sent}, **kwargs)
    assert missing.status_code == 404
    assert missing.json()["request_id"] == sent == missing.headers["X-Request-ID"]


def assert_clean_stop(service: ServiceProcess) -> None:
    """SIGTERM: the master exits 0 within the deadline, without a traceback."""
    assert service.proc is not None
    code = service.stop(timeout=STOP_DEADLINE)
    assert code == 0, f"gunicorn exited with {code}:\n{service.logs()}"
    assert "Traceback" not in service.logs()


def test_serves_health_over_http(service_factory: Callable[..., ServiceProcess]) -> None:
    service = service_factory(ready=False)
    response = service.get("/health", timeout=10)
    assert_healthy(response)
    assert response.headers["Content-Type"].startswith("application/json")
    assert_request_ids(service, timeout=10)
    assert_clean_stop(service)


def test_serves_health_over_https(tmp_path: Path, prefix: str) -> None:
    cert, key = self_signed_cert(tmp_path)
    service = ServiceProcess(tmp_path, {**queue_env(prefix), "USE_SSL": "true",
                                        "SSL_CERTFILE": str(cert), "SSL_KEYFILE": str(key)},
                             scheme="https")
    try:
        # ServiceProcess polls with verify=False; only that polling may be unverified.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureRequestWarning)
            service.start(ready=False)
        response = service.get("/health", timeout=10, verify=str(cert))
        assert_healthy(response)
        assert_request_ids(service, timeout=10, verify=str(cert))
        with pytest.raises(requests.exceptions.SSLError):
            service.get("/health", timeout=10, verify=True)  # not a publicly trusted cert
        plain = f"http://127.0.0.1:{service.port}/api/v3.0/cluster/health"
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(plain, timeout=10)  # TLS only: plain HTTP gets no answer
        assert_clean_stop(service)
    finally:
        service.stop()


@pytest.mark.parametrize("path", [
    "/api/v3.0//cluster/health",
    "//api/v3.0/cluster/health",
    "/api/v3.0/cluster//namespaces?agent_id=a",
    "/api/v3.0/cluster/health/",
], ids=["double-slash", "leading-double-slash", "double-slash-namespaces", "trailing-slash"])
def test_path_normalisation_never_redirects(service_factory: Callable[..., ServiceProcess],
                                            path: str) -> None:
    """werkzeug answered ``//`` with a 308 to ``http://<Host header>/...`` and an HTML body:
    an open redirect to any host the client names. Now: the 404 envelope."""
    import json
    import socket

    service = service_factory(ready=False)
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: evil.example\r\n"
                     "Connection: close\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip()
               for line in header_lines}
    assert status_line.split()[1] == "404", raw[:300]
    assert "location" not in headers
    assert headers["content-type"].startswith("application/json")
    envelope = json.loads(body)
    assert envelope["error"] == "not_found" and envelope["success"] is False
    assert b"evil.example" not in raw
