"""One JSON access line and the HTTP metrics for every request.

Probe and scrape endpoints (``/health``, ``/ready``, ``/metrics``) are counted in
the metrics like every request, but their access lines are logged at DEBUG:
Kubernetes calls them every few seconds per pod, and at INFO they would drown
the lines an operator is looking for.

The request thread only hands the line's values over, once the response has been
sent (``call_on_close``: gunicorn closes the response after writing its body, a
client that hung up included); the log writer's thread renders and writes the
line (``observability/log_writer.py``). Its duration is that of the app, up to
the response being ready. When logging is not the service's own JSON handler
(tests, a handler added by hand), the values go through ``logging`` as a record
with the same fields instead.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any

from flask import Request, Response

from ..observability import metrics
from ..observability.logging_config import direct_sink
from ..observability.timestamps import utc_timestamp

log = logging.getLogger("cluster_service.access")

QUIET_SUFFIXES = ("/health", "/ready", "/metrics")
_LEVEL_NAMES = {logging.DEBUG: "DEBUG", logging.INFO: "INFO"}

# What the request thread hands over: level, request id, method, path, status,
# duration in ms, key fingerprint, client address, user id.
Values = tuple[int, str, str, str, int, float, "str | None", "str | None", Any]


def render(created: float, values: Values) -> str:
    """The access line as the JSON handler writes a record (``logging_config.py``): the
    same fields in the same order. Runs in the log writer's thread."""
    level, request_id, method, path, status, duration_ms, key_fp, client, user_id = values
    return json.dumps({
        "time": utc_timestamp(created), "level": _LEVEL_NAMES[level],
        "logger": log.name, "message": "request", "request_id": request_id,
        "pid": os.getpid(), "event": "access", "method": method, "path": path,
        "status": status, "duration_ms": duration_ms, "key_fp": key_fp, "client": client,
        "user_id": user_id})


def _as_record(values: Values) -> None:
    level, request_id, method, path, status, duration_ms, key_fp, client, user_id = values
    log.log(level, "request", extra={
        "request_id": request_id, "event": "access", "method": method, "path": path,
        "status": status, "duration_ms": duration_ms, "key_fp": key_fp, "client": client,
        "user_id": user_id})


class AccessLog:
    """Counts each request in the metrics and hands its access line over."""

    def __init__(self, metrics_enabled: bool) -> None:
        self.metrics_enabled = metrics_enabled

    def record(self, request: Request, response: Response, seconds: float, request_id: str,
               key_fp: str | None, user: Any) -> None:
        """Count ``request`` and log its line once ``response`` is closed."""
        rule = request.url_rule
        endpoint = rule.rule if rule is not None else "unmatched"
        method, status = request.method, response.status_code
        if self.metrics_enabled:
            metrics.observe_request(endpoint, method, status, seconds)
        level = logging.DEBUG if endpoint.endswith(QUIET_SUFFIXES) else logging.INFO
        if not log.isEnabledFor(level):
            return
        values: Values = (level, request_id, method, request.path, status,
                          round(seconds * 1000, 2), key_fp, request.remote_addr,
                          getattr(user, "id", None))
        sink = direct_sink(log)
        if sink is not None:
            response.call_on_close(functools.partial(sink.hand_over, render, values))
        else:
            response.call_on_close(functools.partial(_as_record, values))
