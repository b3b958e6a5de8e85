"""Liveness and readiness probes: no key, never rate limited.

``/health`` never touches the broker: a liveness probe that depends on the
broker would restart every pod on a broker blip. ``/ready`` reports this
worker's broker connection, so Kubernetes stops routing to a pod that cannot
serve cluster calls. When up, ``checks.rabbitmq_node`` names the broker node
(``host:port``) the worker is connected to.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from ..observability.timestamps import utc_timestamp
from .contract import VERSION
from .extension import services
from .schemas import ReadyResponse

bp = Blueprint("health", __name__)
_ready = ReadyResponse()


@bp.get("/health")
def health() -> Response:
    # Built directly rather than dumped through HealthResponse (which documents
    # it): the liveness probe is the hottest and simplest path we have.
    return jsonify(status="healthy", service="cluster_service", timestamp=utc_timestamp(),
                   version=VERSION)


@bp.get("/ready")
def ready() -> tuple[Response, int]:
    rpc = services().rpc
    rpc.start()
    up = rpc.connected
    checks = {"rabbitmq": "ok" if up else "unavailable"}
    node = rpc.broker_node
    if up and node:  # which node of RABBITMQ_HOST; host:port only, never credentials
        checks["rabbitmq_node"] = node
    body = {"status": "ready" if up else "not_ready", "checks": checks,
            "timestamp": utc_timestamp()}
    return jsonify(_ready.dump(body)), 200 if up else 503
