"""``/metrics`` (Prometheus text) and ``/openapi.json``: no key, never rate limited."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from werkzeug.exceptions import NotFound

from ..observability import metrics
from .extension import services
from .openapi import build_spec

bp = Blueprint("meta", __name__)


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    if not services().settings.metrics_enabled:
        raise NotFound()
    data, content_type = metrics.render()
    return Response(data, mimetype=content_type)


@bp.get("/openapi.json")
def openapi() -> Response:
    spec = current_app.extensions.get("cluster_openapi")
    if spec is None:
        spec = current_app.extensions["cluster_openapi"] = build_spec()
    return jsonify(spec)
