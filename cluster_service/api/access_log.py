"""One JSON access line and the HTTP metrics for every request.

Probe and scrape endpoints (``/health``, ``/ready``, ``/metrics``) are counted in
the metrics like every request, but their access lines are logged at DEBUG:
Kubernetes calls them every few seconds per pod, and at INFO they would drown
the lines an operator is looking for.

The line is written once the response has been sent (``call_on_close``: gunicorn
closes the response after writing its body, a client that hung up included), so
building and queueing the record is not part of the client's wait; its duration
is that of the app, up to the response being ready, as before.
"""

from __future__ import annotations

import functools
import logging
import time

from flask import Flask, Response, g, request

from ..observability import metrics
from ..observability.request_context import current_request_id

log = logging.getLogger("cluster_service.access")

QUIET_SUFFIXES = ("/health", "/ready", "/metrics")


def init_app(app: Flask, metrics_enabled: bool = True) -> None:
    """Time each request; log and count it once the response is ready."""

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _log(response: Response) -> Response:
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        if metrics_enabled:
            metrics.observe_request(endpoint, request.method, response.status_code, seconds)
        level = logging.DEBUG if endpoint.endswith(QUIET_SUFFIXES) else logging.INFO
        if log.isEnabledFor(level):
            # Read now: the request context (and its request id) is gone by the time
            # the response is closed.
            response.call_on_close(functools.partial(log.log, level, "request", extra={
                "request_id": current_request_id(),
                "event": "access", "method": request.method, "path": request.path,
                "status": response.status_code, "duration_ms": round(seconds * 1000, 2),
                "key_fp": g.get("key_fp"), "client": request.remote_addr,
                "user_id": getattr(g.get("user"), "id", None)}))
        return response
