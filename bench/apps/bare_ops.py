"""``bare-ops``: the cluster-operation anchor, one get-pods (or get-pod-logs) RPC per request.

The same peers, request and reply as the service's ``/pods`` and
``/pods/<pod>/logs``, and the same JSON out (the contract's fields, ``age``
turned into a UTC ``created_at``), written as plainly as a user would: the
thread's own ``BlockingConnection`` and direct reply-to (``bare_rpc.ThreadRpc``),
``json.loads`` of the reply, a list comprehension, ``json.dumps`` of the body.
No auth, limiter, admission, breaker, single flight, schema, paging, access
line or metrics. ``/namespaces`` (from ``bare_rpc``) is served too, so one app
anchors every row of ``python -m bench --scenario operations``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from flask import Response, request
from pika.exceptions import AMQPError

from bench.apps import bare_rpc
from bench.apps.bare_rpc import RpcTimeout, app

OPS_QUEUE = os.environ.get("BENCH_OPS_QUEUE", "cluster_operation_requests")

__all__ = ["app"]


def _utc(age: Any) -> str | None:
    """A Go ``time.Time`` (any offset, up to nine fraction digits) in the contract's UTC form."""
    if not isinstance(age, str):
        return None
    moment = datetime.fromisoformat(age).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _pod(item: dict[str, Any]) -> dict[str, Any]:
    return {"name": item["name"], "namespace": item["namespace"], "status": item["status"],
            "node": item.get("node"), "restarts": item.get("restarts", 0),
            "created_at": _utc(item.get("age")),
            "containers": [{"name": c["name"], "image": c["image"], "ready": c["ready"]}
                           for c in item.get("containers") or []]}


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status,
                    mimetype="application/json")


def _operation(command: str, params: dict[str, Any]) -> tuple[Any, Response | None]:
    """One operation round trip; (result, None) or (None, an error response)."""
    payload = {"request_id": uuid.uuid4().hex, "timestamp": time.time(), "command": command,
               "agent_id": request.args.get("agent_id", ""),
               "cluster_id": request.args.get("cluster_id", type=int), "params": params,
               "user": {"id": 1, "username": "bench"}}
    try:
        reply = json.loads(bare_rpc._rpc().call(payload, OPS_QUEUE))
    except RpcTimeout:
        return None, _json({"success": False, "error": "agent_timeout"}, 504)
    except AMQPError:
        bare_rpc._local.rpc = None  # reconnect on the next request
        return None, _json({"success": False, "error": "broker"}, 503)
    result = reply.get("result")
    if isinstance(result, str):
        try:
            result = json.loads(result)
        except ValueError:
            result = None
    if reply.get("error") or not isinstance(result, dict):
        return None, _json({"success": False, "error": "agent_error"}, 502)
    return result, None


@app.get("/pods")
def pods() -> Response:
    """get-pods, every pod mapped to the contract's fields, the whole list in one body."""
    namespace = request.args.get("namespace")
    result, failed = _operation("get-pods", {"namespace": namespace or ""})
    if failed is not None:
        return failed
    items = [_pod(item) for item in result.get("pods") or []]
    return _json({"success": True, "agent_id": request.args.get("agent_id", ""),
                  "cluster_id": request.args.get("cluster_id", type=int),
                  "namespace": namespace, "pods": items, "total_count": len(items),
                  "timestamp": bare_rpc._timestamp()})


@app.get("/pods/<pod>/logs")
def pod_logs(pod: str) -> Response:
    """get-pod-logs, the log text in a JSON body."""
    namespace = request.args.get("namespace", "")
    container = request.args.get("container")
    tail_lines = request.args.get("tail_lines", 100, type=int)
    result, failed = _operation("get-pod-logs", {
        "namespace": namespace, "pod_name": pod, "container_name": container or "",
        "tail_lines": tail_lines})
    if failed is not None:
        return failed
    return _json({"success": True, "agent_id": request.args.get("agent_id", ""),
                  "cluster_id": request.args.get("cluster_id", type=int),
                  "namespace": namespace, "pod": pod, "container": container,
                  "tail_lines": tail_lines, "logs": result.get("logs", ""),
                  "timestamp": bare_rpc._timestamp()})
