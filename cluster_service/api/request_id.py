"""``X-Request-ID``: accept a sane one from the client, otherwise make one.

The id is kept in a ContextVar (``context.request_id_var``) for the duration
of the request so logs and the AMQP ``x-request-id`` header carry it.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

from ..observability.request_context import request_id_var
from .contract import REQUEST_ID_HEADER

_SANE = re.compile(r"^[A-Za-z0-9._:+=/-]{1,128}$")


def choose_request_id(sent: str | None) -> str:
    """The client's id if it is short and plain, else a new uuid4."""
    if sent and _SANE.match(sent):
        return sent
    return str(uuid.uuid4())


def init_app(app: Flask) -> None:
    """Set the id before each request and echo it on every response."""

    @app.before_request
    def _assign() -> None:
        g.request_id = choose_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.request_id_token = request_id_var.set(g.request_id)

    @app.after_request
    def _echo(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id") or request_id_var.get()
        return response

    @app.teardown_request
    def _reset(_error: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id_var.reset(token)
