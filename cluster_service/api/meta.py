"""``/metrics`` (Prometheus text) and ``/openapi.json``: no key, never rate limited."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from werkzeug.exceptions import NotFound

from ..observability import metrics
from ..wiring import services

bp = Blueprint("meta", __name__)


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    if not services().settings.metrics_enabled:
        raise NotFound()
    return metrics.render()


@bp.get("/openapi.json")
def openapi() -> Response:
    from .openapi import build_spec

    spec = current_app.extensions.get("cluster_openapi")
    if spec is None:
        spec = current_app.extensions["cluster_openapi"] = build_spec()
    return jsonify(spec)
