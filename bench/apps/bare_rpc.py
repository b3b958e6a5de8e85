"""``bare-rpc``: one pika RPC per request, written the simple correct way.

Each gunicorn thread owns its own ``BlockingConnection`` (pika's blocking
connection is not thread-safe) and consumes RabbitMQ's direct reply-to
pseudo-queue on the same channel it publishes from: consume before publishing,
auto-ack, as the direct reply-to rules require. No auth, no limiter, no cache.
``/`` asks ``bench.responder`` (the fast floor); ``/namespaces`` asks the stand-in
peers' namespace queue, like the service (the slow-agents anchor).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any

import pika
from flask import Flask, Response, jsonify, request
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError

REPLY_TO = "amq.rabbitmq.reply-to"
QUEUE = os.environ.get("BENCH_RPC_QUEUE", "bench-echo")
TIMEOUT = float(os.environ.get("BENCH_RPC_TIMEOUT", "5"))

app = Flask(__name__)
app.json.sort_keys = False  # type: ignore[attr-defined]  # the service's key order
_local = threading.local()


class RpcTimeout(Exception):
    """No reply arrived before the deadline."""


class ThreadRpc:
    """One thread's connection, channel and the reply it is waiting for."""

    def __init__(self) -> None:
        credentials = pika.PlainCredentials(os.environ.get("RABBITMQ_USER", "guest"),
                                            os.environ.get("RABBITMQ_PASSWORD", "guest"))
        params = pika.ConnectionParameters(
            host=os.environ.get("RABBITMQ_HOST", "127.0.0.1"),
            port=int(os.environ.get("RABBITMQ_PORT", "5672")),
            virtual_host=os.environ.get("RABBITMQ_VHOST", "/"),
            credentials=credentials)
        self.connection = pika.BlockingConnection(params)
        self.channel: BlockingChannel = self.connection.channel()
        self.channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)
        self.waiting_for = ""
        self.reply: bytes | None = None

    def _on_reply(self, _ch: Any, _method: Any, props: pika.BasicProperties,
                  body: bytes) -> None:
        if props.correlation_id == self.waiting_for:
            self.reply = body

    def call(self, payload: dict[str, Any], queue: str = QUEUE) -> bytes:
        """Publish one request to ``queue`` and block this thread until its reply or the
        timeout."""
        self.waiting_for = uuid.uuid4().hex
        self.reply = None
        props = pika.BasicProperties(reply_to=REPLY_TO, correlation_id=self.waiting_for,
                                     content_type="application/json", delivery_mode=1,
                                     expiration=str(int(TIMEOUT * 1000)))
        self.channel.basic_publish("", queue, json.dumps(payload).encode(), props)
        deadline = time.monotonic() + TIMEOUT
        while self.reply is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RpcTimeout()
            self.connection.process_data_events(time_limit=remaining)
        return self.reply


def _rpc() -> ThreadRpc:
    rpc: ThreadRpc | None = getattr(_local, "rpc", None)
    if rpc is None or not rpc.connection.is_open:
        rpc = _local.rpc = ThreadRpc()
    return rpc


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def _namespace(item: dict[str, Any]) -> dict[str, Any]:
    return {"name": item["name"], "status": item.get("status") or "Unknown",
            "created_at": item.get("createdAt", item.get("created_at")),
            "labels": item.get("labels") or {}, "annotations": item.get("annotations") or {}}


@app.get("/namespaces")
def namespaces() -> tuple[Response, int]:
    """One get-namespaces round trip to the stand-in peers; the service's response body.

    The like-for-like anchor (``bare-namespaces``, and the slow-agents anchor): the
    same peers, request and reply as the service, and the same JSON out (shape and
    fields), written as plainly as a user would; none of the service's layers (no
    auth, limiter, admission, breaker, single flight, schema, access line or metrics).
    """
    agent_id = request.args.get("agent_id", "")
    cluster_id = request.args.get("cluster_id", type=int)
    payload = {"request_id": uuid.uuid4().hex, "timestamp": time.time(),
               "command": "get-namespaces", "agent_id": agent_id, "cluster_id": cluster_id,
               "cluster_config": {"cluster_id": cluster_id, "include_details": True},
               "user": {"id": 1, "username": "bench"}}
    try:
        reply = json.loads(_rpc().call(payload))
    except RpcTimeout:
        return jsonify(success=False, error="agent_timeout"), 504
    except AMQPError:
        _local.rpc = None  # reconnect on the next request
        return jsonify(success=False, error="broker"), 503
    result = reply.get("result")
    if isinstance(result, str):
        result = json.loads(result)
    if reply.get("error") or not isinstance(result, dict):
        return jsonify(success=False, error="agent_error"), 502
    items = [_namespace(item) for item in result.get("namespaces", [])]
    return jsonify(success=True, agent_id=agent_id, cluster_id=cluster_id, namespaces=items,
                   total_count=len(items),
                   message="Successfully retrieved namespaces from cluster",
                   timestamp=_timestamp()), 200


@app.get("/")
def echo() -> tuple[Response, int]:
    """Do one round trip to the responder and return its answer."""
    try:
        reply = json.loads(_rpc().call({"request_id": uuid.uuid4().hex, "ts": time.time()}))
    except RpcTimeout:
        return jsonify(success=False, error="timeout"), 504
    except AMQPError:
        _local.rpc = None  # reconnect on the next request
        return jsonify(success=False, error="broker"), 503
    return jsonify(success=True, reply=reply), 200
