"""JSON logs of the real service written to ``LOG_FILE``: fields, request ids, no secrets."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from ..support.service import ServiceProcess, wait_for

pytestmark = [pytest.mark.gunicorn, pytest.mark.rabbitmq]

API_KEY = "demo-key"  # accepted by the stand-in peers
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")  # RFC 3339, UTC
ACCESS_FIELDS = {"time", "level", "logger", "message", "event", "method", "path", "status",
                 "duration_ms", "request_id", "key_fp", "client", "pid"}


def records(path: Path) -> list[dict[str, Any]]:
    """Every line of the file, each of which must be one JSON object."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [json.loads(line) for line in lines]


def lines_of(path: Path, request_id: str) -> list[dict[str, Any]]:
    return [r for r in records(path) if r.get("request_id") == request_id]


def wait_for_access_line(path: Path, request_id: str) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]]:
        lines = lines_of(path, request_id)
        return lines if any(r.get("event") == "access" for r in lines) else []

    found: list[dict[str, Any]] = wait_for(ready, 10, what="the access line")
    return found


@pytest.fixture
def logged(service_factory: Callable[..., ServiceProcess], peers: Any,
           tmp_path: Path) -> tuple[ServiceProcess, Path]:
    log_file = tmp_path / "service.log"
    # DEBUG: successful RPCs are logged at DEBUG (failed ones at WARNING).
    return service_factory(LOG_FILE=str(log_file), LOG_LEVEL="DEBUG"), log_file


def test_access_line_and_rpc_lines_share_the_request_id(
        logged: tuple[ServiceProcess, Path]) -> None:
    service, log_file = logged
    request_id = f"log-{uuid.uuid4().hex}"
    response = service.get("/namespaces", params={"agent_id": "demo-agent-1"},
                           headers={"X-API-Key": API_KEY, "X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == request_id

    mine = wait_for_access_line(log_file, request_id)
    (access,) = [r for r in mine if r.get("event") == "access"]
    assert ACCESS_FIELDS <= set(access)
    assert all(TIMESTAMP.match(r["time"]) for r in records(log_file)), "time not RFC 3339 UTC"
    assert (access["method"], access["path"], access["status"]) == (
        "GET", "/api/v3.0/cluster/namespaces", 200)
    assert access["level"] == "INFO"
    assert isinstance(access["duration_ms"], (int, float)) and access["duration_ms"] >= 0
    assert access["client"] == "127.0.0.1"
    assert len(access["key_fp"]) == 12 and access["key_fp"] != API_KEY

    rpcs = {r["queue"]: r for r in mine if r.get("event") == "rpc"}
    queues = {service.env["AUTH_REQUEST_QUEUE"], service.env["NAMESPACE_REQUEST_QUEUE"]}
    assert set(rpcs) == queues, "no RPC lines: is LoggingObserver wired in create_app?"
    for rpc in rpcs.values():
        assert rpc["outcome"] == "ok" and rpc["level"] == "DEBUG"
        assert 0 <= rpc["duration_ms"] <= access["duration_ms"]
        assert rpc["pid"] == access["pid"]

    (audit,) = [r for r in mine if r.get("event") == "auth"]
    assert (audit["outcome"], audit["key_fp"]) == ("success", access["key_fp"])


def test_no_api_key_and_no_message_body_in_the_log(logged: tuple[ServiceProcess, Path]) -> None:
    service, log_file = logged
    rejected_key = f"rejected-{uuid.uuid4().hex}"
    request_ids = [f"log-{uuid.uuid4().hex}" for _ in range(3)]
    ok = service.get("/namespaces", params={"agent_id": "demo-agent-2"},
                     headers={"X-API-Key": API_KEY, "X-Request-ID": request_ids[0]})
    assert ok.status_code == 200
    denied = service.get("/agents/connected",
                         headers={"X-API-Key": rejected_key, "X-Request-ID": request_ids[1]})
    assert denied.status_code == 401
    missing = service.get("/no-such-route", headers={"X-API-Key": rejected_key,
                                                     "X-Request-ID": request_ids[2]})
    assert missing.status_code == 404
    for request_id in request_ids:
        wait_for_access_line(log_file, request_id)

    text = log_file.read_text(encoding="utf-8")
    assert API_KEY not in text
    assert rejected_key not in text
    assert "api_key" not in text
    # The namespaces reply's content (names unique to this agent) stays out of every line,
    # DEBUG ones included.
    for namespace in ok.json()["namespaces"]:
        if "demo-agent-2" in namespace["name"]:
            assert namespace["name"] not in text
    auth_lines = [r for r in lines_of(log_file, request_ids[1]) if r.get("event") == "auth"]
    assert [r["level"] for r in auth_lines] == ["WARNING"]


def test_a_clean_shutdown_logs_at_info_only(logged: tuple[ServiceProcess, Path]) -> None:
    """SIGTERM to the real gunicorn: each worker closes its broker connection, at INFO."""
    service, log_file = logged
    pids = {str(pid) for pid in service.worker_pids()}
    response = service.get("/agents/connected", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200
    assert service.stop(timeout=30) == 0, service.logs()

    lines = records(log_file)
    closed = {str(r["pid"]) for r in lines if r.get("event") == "broker_closed"}
    assert closed == pids, f"workers that logged a clean close: {closed}, workers: {pids}"
    loud = [(r["level"], r["message"]) for r in lines
            if r["level"] not in ("DEBUG", "INFO")]
    assert loud == [], loud
    assert not any(r["message"] == "broker connection down" for r in lines)
