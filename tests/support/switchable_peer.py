"""A namespaces peer whose agents can be made to hang and to recover while a test runs.

The stand-in peers decide an agent's behaviour from its id, once; a breaker test
needs one agent id that first never answers and later answers again. This peer
consumes only the namespace request queue (the stand-in peers keep auth and
list-agents) and answers to ``reply_to`` unless the agent is in ``hung``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pika


class SwitchablePeer:
    """Answers get-namespaces after ``latency`` seconds, except for agents in ``hung``."""

    def __init__(self, queue: str, latency: float = 0.0) -> None:
        self.queue = queue
        self.latency = latency
        self.hung: set[str] = set()
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="switchable-peer", daemon=True)

    def start(self, timeout: float = 10) -> "SwitchablePeer":
        self._thread.start()
        if not self._ready.wait(timeout):
            raise AssertionError(f"the switchable peer did not start consuming {self.queue}")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def set_hung(self, agent_id: str, hung: bool) -> None:
        with self._lock:
            (self.hung.add if hung else self.hung.discard)(agent_id)

    def _run(self) -> None:
        connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
        try:
            channel = connection.channel()
            channel.queue_declare(self.queue, durable=True)
            channel.basic_consume(self.queue, auto_ack=True,
                                  on_message_callback=lambda *a: self._on_request(connection, *a))
            self._ready.set()
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.1)
        finally:
            if connection.is_open:
                connection.close()

    def _on_request(self, connection: Any, channel: Any, method: Any, properties: Any,
                    body: bytes) -> None:
        request = json.loads(body)
        with self._lock:
            self.requests += 1
            if request.get("agent_id") in self.hung:
                return
        reply = json.dumps({
            "request_id": request["request_id"], "agent_id": request["agent_id"],
            "error": None, "timestamp": "2024-01-01T12:00:00.000Z",
            "result": {"namespaces": [{"name": f"ns-of-{request['agent_id']}",
                                       "status": "Active"}], "total_count": 1}}).encode()

        def send() -> None:
            channel.basic_publish("", properties.reply_to, reply, pika.BasicProperties(
                content_type="application/json", correlation_id=properties.correlation_id))

        if self.latency:
            connection.call_later(self.latency, send)
        else:
            send()
