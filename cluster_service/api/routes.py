"""Attach every blueprint under :data:`~cluster_service.api.contract.BASE_PATH`."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, request

from ..errors import InvalidRequest
from . import agents, health, meta, operations
from .contract import BASE_PATH, MAX_QUERY_STRING

# The blueprints whose every answer is one user's view (contract §1: no shared cache
# may keep it); the per-key rate limit applies to them.
AUTHENTICATED: tuple[Blueprint, ...] = (operations.bp, agents.bp)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint to ``app``, and refuse a bad query string before any view."""
    for module in (health, operations, agents, meta):
        app.register_blueprint(module.bp, url_prefix=BASE_PATH)
    for blueprint in AUTHENTICATED:
        app.after_request_funcs.setdefault(blueprint.name, []).append(_no_store)

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
