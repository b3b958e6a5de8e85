"""The shipped nginx config in front of the real gunicorn, with TRUSTED_PROXY_ADDRESSES=127.0.0.1.

Clients connect from different loopback addresses (127.0.0.2, 127.0.0.3), so
"the client's address" and "nginx's address" (127.0.0.1) differ: the service
must count failed logins per real client (the hop nginx appended), never per
nginx and never per whatever the client wrote into X-Forwarded-For. A client
that reaches gunicorn's port directly (not from nginx's address) is counted by
its own TCP address, whatever X-Forwarded-For it sends.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from cluster_service.config import Settings

from ..support.nginx import NGINX, SHIPPED_CONF, NginxProcess
from ..support.peers import start_peers
from ..support.rate_window import fresh_window
from ..support.service import ServiceProcess

pytestmark = [pytest.mark.nginx, pytest.mark.gunicorn, pytest.mark.rabbitmq]

if NGINX is None and not os.environ.get("CI"):
    pytest.skip("nginx is not installed (apt-get install -y nginx); CI installs it",
                allow_module_level=True)

BASE = "/api/v3.0/cluster"
SPOOFED = ("127.0.113.7", "127.51.100.23", "127.9.8.7, 127.0.2.200", "127.0.0.9", "unknown")
ENVELOPE = {"success", "error", "message", "request_id", "timestamp"}


def request(nginx: NginxProcess, source: str, path: str, headers: dict[str, str],
            ) -> tuple[int, dict[str, str], bytes]:
    """One GET through nginx from the loopback address ``source``."""
    conn = http.client.HTTPConnection("127.0.0.1", nginx.port, timeout=30,
                                      source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def stack(tmp_path: Path, prefix: str,
          service_factory: Callable[..., ServiceProcess]) -> Iterator[Any]:
    if NGINX is None:
        pytest.fail("nginx is missing but CI is set: .ci/run should have installed it")
    peers = start_peers(prefix)
    service = service_factory(WEB_CONCURRENCY="1", TRUSTED_PROXY_ADDRESSES="127.0.0.1",
                              RATE_LIMIT_ENABLED="true", AUTH_FAILURES_PER_MINUTE="3",
                              RATE_LIMIT_REQUESTS_PER_MINUTE="100")
    nginx = NginxProcess(tmp_path, service.port).start()
    try:
        yield peers, service, nginx
    finally:
        nginx.stop()
        peers.stop()


def test_shipped_timeouts_and_limits_fit_the_service() -> None:
    text = SHIPPED_CONF.read_text()

    def seconds(directive: str) -> int:
        match = re.search(rf"(?m)^\s*{directive}\s+(\d+)s;", text)
        assert match, directive
        return int(match.group(1))

    defaults = Settings()
    longest = defaults.auth_timeout + defaults.websocket_timeout
    gunicorn_timeout = longest + 30
    assert longest < seconds("proxy_read_timeout") < gunicorn_timeout
    assert seconds("proxy_read_timeout") > defaults.websocket_timeout
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text
    assert "proxy_set_header X-Real-IP $remote_addr;" in text
    assert re.search(r"(?m)^\s*client_max_body_size\s+\d+k;", text)
    assert re.search(r"(?m)^\s*large_client_header_buffers\s+\d+\s+\d+k;", text)
    assert re.search(r"(?m)^\s*proxy_next_upstream\s+off;", text)


def test_the_limiter_sees_the_real_client_through_nginx(stack: Any) -> None:
    peers, service, nginx = stack
    fresh_window(4)  # the counted failures run within one limiter window
    # 127.0.0.2 guesses keys, writing a different X-Forwarded-For each time.
    auth_before = peers.counters["requests_auth"]
    for spoofed in SPOOFED[:3]:
        status, _headers, body = request(nginx, "127.0.0.2", f"{BASE}/agents/connected", {
            "X-API-Key": f"guess-{uuid.uuid4().hex}", "X-Forwarded-For": spoofed,
            "X-Real-IP": spoofed})
        assert status == 401, body
    assert peers.counters["requests_auth"] == auth_before + 3
    for spoofed in SPOOFED[3:]:  # past AUTH_FAILURES_PER_MINUTE: 429, whatever it claims
        status, headers, body = request(nginx, "127.0.0.2", f"{BASE}/agents/connected", {
            "X-API-Key": f"guess-{uuid.uuid4().hex}", "X-Forwarded-For": spoofed})
        assert status == 429, body
        envelope = json.loads(body)
        assert set(envelope) == ENVELOPE and envelope["error"] == "rate_limit_exceeded"
        assert int(headers["Retry-After"]) >= 1
    assert peers.counters["requests_auth"] == auth_before + 3  # no RPC past the limit

    # Another client behind the same nginx has its own count, and is served.
    status, _headers, _body = request(nginx, "127.0.0.3", f"{BASE}/agents/connected", {
        "X-API-Key": f"guess-{uuid.uuid4().hex}", "X-Forwarded-For": "127.0.0.2"})
    assert status == 401
    status, _headers, body = request(nginx, "127.0.0.3",
                                     f"{BASE}/namespaces?agent_id=demo-agent-1",
                                     {"X-API-Key": "demo-key"})
    assert status == 200, body

    # The app's logs name exactly the addresses nginx passed ($remote_addr).
    lines = service.json_logs()
    access = [line for line in lines if line.get("event") == "access"
              and line.get("path", "").endswith(("/agents/connected", "/namespaces"))]
    audit = [line for line in lines if line.get("event") == "auth"]
    assert [line["client"] for line in access] == ["127.0.0.2"] * 5 + ["127.0.0.3"] * 2, access
    assert {line["client"] for line in audit} == {"127.0.0.2", "127.0.0.3"}, audit
    assert [line["outcome"] for line in audit if line["client"] == "127.0.0.2"] == \
        ["rejected"] * 3 + ["blocked"] * 2
    for line in access + audit:
        assert line["client"] not in SPOOFED and line["client"] != "127.0.0.1"
    # ... which is what nginx itself recorded as $remote_addr for those requests
    passed = [line.split(" ", 1)[0] for line in
              (nginx.dir / "logs" / "access.log").read_text().splitlines()
              if "/agents/connected" in line or "/namespaces" in line]
    assert passed == [line["client"] for line in access]
    assert nginx.proc is not None and nginx.proc.poll() is None


def test_a_client_that_bypasses_nginx_cannot_choose_its_address(stack: Any) -> None:
    """Straight to gunicorn's port from 127.0.0.2 (not nginx's address), a new forged
    X-Forwarded-For on every guess: still one client, blocked after 3 guesses. (The old
    hop count, TRUSTED_PROXIES=1, let 60 of 60 such guesses reach the User Service.)"""
    peers, service, _nginx = stack
    fresh_window(4)
    auth_before = peers.counters["requests_auth"]
    statuses = []
    for i in range(12):
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30,
                                          source_address=("127.0.0.2", 0))
        try:
            conn.request("GET", f"{BASE}/agents/connected", headers={
                "X-API-Key": f"guess-{uuid.uuid4().hex}",
                "X-Forwarded-For": f"127.0.{i}.{i + 1}"})
            statuses.append(conn.getresponse().status)
        finally:
            conn.close()
    assert statuses == [401] * 3 + [429] * 9
    assert peers.counters["requests_auth"] == auth_before + 3
    audit = [line for line in service.json_logs() if line.get("event") == "auth"]
    assert {line["client"] for line in audit} == {"127.0.0.2"}


def test_oversized_requests_stop_at_nginx_or_gunicorn_never_a_500(stack: Any) -> None:
    _peers, service, nginx = stack
    cases = {
        "10 KB header": {"X-Big": "a" * 10240},
        "10 KB key": {"X-API-Key": "k" * 10240},
        "60 headers": {f"X-H{i}": "v" for i in range(60)},
    }
    for name, headers in cases.items():
        status, _h, body = request(nginx, "127.0.0.4", f"{BASE}/agents/connected", headers)
        assert status in (400, 413, 414, 431), (name, status, body[:200])
    status, _h, _b = request(nginx, "127.0.0.4", f"{BASE}/namespaces?agent_id=" + "a" * 9000, {})
    assert status in (400, 414), status
    status, _h, body = request(nginx, "127.0.0.4",
                               f"{BASE}/namespaces?agent_id=a&pad=" + "b" * 2100, {})
    assert status in (400, 401), body  # the app's own limit (or auth first)
    assert request(nginx, "127.0.0.4", f"{BASE}/health", {})[0] == 200
    assert '"status": 500' not in service.logs()
