"""HTTP blueprints, one per resource, all under :data:`BASE_PATH`."""

from __future__ import annotations

from flask import Flask, request

from ..errors import InvalidRequest

BASE_PATH = "/api/v3.0/cluster"
MAX_QUERY_STRING = 2048


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint to ``app``."""
    from . import agents, health, meta, namespaces

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
