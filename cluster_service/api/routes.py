"""Attach every blueprint under :data:`~cluster_service.api.contract.BASE_PATH`."""

from __future__ import annotations

from flask import Flask, request

from ..errors import InvalidRequest
from . import agents, health, meta, namespaces
from .contract import BASE_PATH, MAX_QUERY_STRING


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint to ``app``, and refuse a bad query string before any view."""
    for module in (health, namespaces, agents, meta):
        app.register_blueprint(module.bp, url_prefix=BASE_PATH)

    @app.before_request
    def _refuse_bad_query() -> None:
        if not request.query_string:  # probes carry none: skip the parse
            return
        if len(request.query_string) > MAX_QUERY_STRING:
            raise InvalidRequest(f"query string: longer than {MAX_QUERY_STRING} bytes")
        try:
            request.args  # werkzeug decodes strictly: invalid UTF-8 raises here, not in views
        except UnicodeDecodeError:
            raise InvalidRequest("query string: not valid UTF-8") from None
