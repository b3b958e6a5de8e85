"""The one JSON error envelope, and the one handler from domain errors to HTTP.

Views raise; these handlers format. Every error body has the same five keys
and never holds a stack trace, an exception's text or an API key.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import RequestRedirect

from .. import errors as exc
from ..observability.request_context import current_request_id
from ..observability.timestamps import utc_timestamp
from .contract import HTTP_ERRORS

log = logging.getLogger(__name__)


def error_response(status: int, error: str, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    """Build the contract's error envelope."""
    response = jsonify(success=False, error=error, message=message,
                       request_id=current_request_id(), timestamp=utc_timestamp())
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _handle_domain(error: exc.ClusterServiceError) -> Response:
    """Each domain error names its own status and code (``cluster_service/errors.py``)."""
    status = error.http_status
    headers: dict[str, str] = {}
    retry_after = error.retry_after
    if retry_after is None and status == 503:
        retry_after = exc.RETRY_AFTER_SECONDS
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    message = error.message if status != 500 else "Internal server error"
    return error_response(status, error.error_code, message, headers)


def _handle_http(error: HTTPException) -> Response:
    status = error.code or 500
    code, message = HTTP_ERRORS.get(status, ("http_error", error.name))
    headers: dict[str, Any] = {}
    if status == 405 and error.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(sorted(error.valid_methods))  # type: ignore[attr-defined]
    if status >= 500:
        code, message = "internal_error", "Internal server error"
    return error_response(status, code, message, headers)


def _handle_unexpected(error: Exception) -> Response:
    # Only the exception's type is logged: its message or traceback could hold
    # request data such as an API key, and no log line may carry one.
    log.error("unhandled error", extra={"event": "unhandled_error",
                                        "error_type": type(error).__name__})
    return error_response(500, "internal_error", "Internal server error")


def refuse_redirects(routing_exception: Exception | None, path: str) -> None:
    """404 for a path werkzeug would answer with a redirect (see :func:`init_app`)."""
    if isinstance(routing_exception, RequestRedirect) or "//" in path:
        raise NotFound()


def init_app(app: Flask) -> None:
    """Register the handlers on ``app``, and turn off redirects from path normalisation.

    werkzeug answers ``//`` in a path (merge_slashes) or a missing trailing slash
    (strict_slashes) with a 308 to a URL built from the ``Host`` header, with an
    HTML body and past every error handler: an open redirect to any host a client
    names. Such paths are simply unknown here: the 404 envelope (the request hooks
    call :func:`refuse_redirects`). (werkzeug also ignores leading slashes; a ``//``
    anywhere in the path is refused the same way.)
    """
    app.url_map.merge_slashes = False
    app.register_error_handler(exc.ClusterServiceError, _handle_domain)
    app.register_error_handler(HTTPException, _handle_http)
    app.register_error_handler(Exception, _handle_unexpected)
