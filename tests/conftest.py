"""Fixtures: the app with a fake transport (fast), and the real service under gunicorn."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cluster_service import create_app
from cluster_service.config import load_settings

from .support.fake_transport import FakeTransport
from .support.peers import delete_queues, start_peers
from .support.service import ServiceProcess, queue_env

API_KEY = "demo-key"
BASE = "/api/v3.0/cluster"

VALID_USER = {"id": 7, "username": "ana", "email": "ana@example.com", "roles": "admin,dev",
              "is_active": True}


def namespaces_reply(agent_id: str) -> dict[str, Any]:
    return {"agent_id": agent_id, "error": None, "result": {
        "namespaces": [{"name": "default", "status": "Active", "createdAt": "2024-01-01T12:00:00Z",
                        "labels": {"kubernetes.io/metadata.name": "default"}},
                       {"name": f"team-{agent_id}"}],
        "total_count": 2}}


@pytest.fixture
def transport() -> FakeTransport:
    """A fake broker: auth accepts ``demo-key``; namespaces answers for any agent."""
    fake = FakeTransport()

    def auth(body: dict[str, Any]) -> list[tuple[Any, float]]:
        if body["api_key"] == API_KEY:
            return [({"request_id": body["request_id"], "valid": True, "user_data": VALID_USER,
                      "message": "Authentication successful"}, 0)]
        return [({"request_id": body["request_id"], "valid": False,
                  "error": "Invalid API key"}, 0)]

    def namespaces(body: dict[str, Any]) -> list[tuple[Any, float]]:
        return [({"request_id": body["request_id"], **namespaces_reply(body["agent_id"])}, 0)]

    def agents(body: dict[str, Any]) -> list[tuple[Any, float]]:
        return [({"request_id": body["request_id"], "agents": ["b", "a", "b"], "error": None}, 0)]

    fake.responders.update({"cluster_auth_requests": auth,
                            "cluster_namespace_requests": namespaces,
                            "cluster_agents_requests": agents})
    return fake


@pytest.fixture
def make_app(transport: FakeTransport) -> Callable[..., Flask]:
    """Build an app over the fake transport with settings overrides (env-var names)."""

    def build(**env: str) -> Flask:
        settings = load_settings({"RATE_LIMIT_ENABLED": "false", "DEBUG": "false",
                                  "WEBSOCKET_TIMEOUT": "2", "AUTH_TIMEOUT": "2", **env})
        return create_app(settings, transport=transport)

    return build


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def prefix() -> Iterator[str]:
    """A unique queue-name prefix; the test's queues are deleted afterwards."""
    value = f"t-{uuid.uuid4().hex[:10]}-"
    yield value
    try:
        delete_queues(value)
    except Exception:  # the broker may be the thing a test took away
        pass


@pytest.fixture
def peers(prefix: str) -> Iterator[Any]:
    """The stand-in peers on this test's queues."""
    running = start_peers(prefix)
    yield running
    running.stop()


@pytest.fixture
def service_factory(tmp_path: Path, prefix: str) -> Iterator[Callable[..., ServiceProcess]]:
    """Start real gunicorn services on this test's queues; all are stopped at teardown."""
    started: list[ServiceProcess] = []

    def start(ready: bool = True, **env: str) -> ServiceProcess:
        service = ServiceProcess(tmp_path, {**queue_env(prefix), **env})
        started.append(service)
        return service.start(ready=ready)

    yield start
    for service in started:
        service.stop()
