"""The app's one before-request, one after-request and one teardown hook.

Every request runs them, probes included, so they are one of each rather than
one per concern: Flask dispatches each registered hook on its own (and, unless
told otherwise, asks of each whether it is a coroutine), and each reached the
request and ``g`` through their context proxies again. What they do, in order:

* before: choose the request id (``request_id.py``) and start the timer; refuse a
  path werkzeug would redirect (``error_handlers.refuse_redirects``) and a bad
  query string (``routes.refuse_bad_query``). Raising here skips the view, not
  the after hook.
* after: the per-key limit's headers when the request was counted
  (``limiter.LimitHit``), ``Cache-Control: no-store`` on the answers of the
  authenticated blueprints (``routes.NO_STORE``), the ``X-Request-ID`` echo, then
  the metrics and the access line (``access_log.py``).
* teardown: the request id's ContextVar back to what it was.
"""

from __future__ import annotations

import contextvars
import time
from typing import Any, cast

from flask import Flask, Response, g, request

from ..observability.request_context import request_id_var
from .access_log import AccessLog
from .contract import REQUEST_ID_HEADER
from .error_handlers import refuse_redirects
from .request_id import ENVIRON_KEY, choose_request_id
from .routes import refuse_bad_query


class RequestCycle:
    """What the hooks keep for one request, in ``g.cycle``."""

    __slots__ = ("started", "request_id", "token")

    def __init__(self, started: float, request_id: str,
                 token: "contextvars.Token[str]") -> None:
        self.started, self.request_id, self.token = started, request_id, token


def init_app(app: Flask, metrics_enabled: bool = True,
             no_store: frozenset[str] = frozenset()) -> None:
    """Register the three hooks on ``app``; ``no_store`` names blueprints whose every
    answer is marked ``Cache-Control: no-store``."""
    access = AccessLog(metrics_enabled)
    # The objects behind the proxies, looked up once per hook.
    current_request, current_g = cast(Any, request)._get_current_object, \
        cast(Any, g)._get_current_object

    @app.before_request
    def _begin() -> None:
        req = current_request()
        environ = req.environ
        request_id = choose_request_id(environ.get(ENVIRON_KEY))
        current_g().cycle = RequestCycle(time.perf_counter(), request_id,
                                         request_id_var.set(request_id))
        refuse_redirects(req.routing_exception, environ.get("PATH_INFO", ""))
        refuse_bad_query(req)

    @app.after_request
    def _end(response: Response) -> Response:
        now = time.perf_counter()
        found = current_g()
        cycle: RequestCycle | None = found.get("cycle")
        hit = found.get("rate_limit")
        if hit is not None:
            hit.add_headers(response)
        req = current_request()
        if req.blueprint in no_store:
            response.headers["Cache-Control"] = "no-store"
        request_id = cycle.request_id if cycle is not None else request_id_var.get()
        response.headers[REQUEST_ID_HEADER] = request_id
        access.record(req, response, now - cycle.started if cycle else 0.0,
                      request_id, found.get("key_fp"), found.get("user"))
        return response

    @app.teardown_request
    def _reset(_error: BaseException | None) -> None:
        cycle = current_g().pop("cycle", None)
        if cycle is not None:
            request_id_var.reset(cycle.token)
