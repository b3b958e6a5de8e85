"""Attach every blueprint under :data:`~cluster_service.api.contract.BASE_PATH`."""

from __future__ import annotations

from flask import Blueprint, Flask
from werkzeug.wrappers import Request

from ..errors import InvalidRequest
from . import agents, health, meta, operations
from .contract import BASE_PATH, MAX_QUERY_STRING

# The blueprints whose every answer is one user's view (contract §1: no shared cache
# may keep it); the per-key rate limit applies to them.
AUTHENTICATED: tuple[Blueprint, ...] = (operations.bp, agents.bp)
# Their names: the request hooks (``request_cycle.py``) mark each of their answers,
# errors included, ``Cache-Control: no-store``.
NO_STORE = frozenset(blueprint.name for blueprint in AUTHENTICATED)


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint to ``app``."""
    for module in (health, operations, agents, meta):
        app.register_blueprint(module.bp, url_prefix=BASE_PATH)


def refuse_bad_query(request: Request) -> None:
    """Refuse a bad query string before any view: too long, or not UTF-8.

    The request hooks (``request_cycle.py``) call it for every request.
    """
    query = request.query_string
    if not query:  # probes carry none: skip the parse
        return
    if len(query) > MAX_QUERY_STRING:
        raise InvalidRequest(f"query string: longer than {MAX_QUERY_STRING} bytes")
    try:
        request.args  # werkzeug decodes strictly: invalid UTF-8 raises here, not in views
    except UnicodeDecodeError:
        raise InvalidRequest("query string: not valid UTF-8") from None
