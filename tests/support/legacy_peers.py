"""The existing KubeSage peers as they really behave on the wire, against the real broker.

The real User Service consumer and Onboarding Service handler answer on the
*fixed* results queues (never ``reply_to``), with ``correlation_id`` unset, no
headers, ``delivery_mode=2`` and a ``timestamp`` that is an ISO string, not
epoch seconds; the Onboarding Service reports a missing agent only as an error
text, and never consumes ``cluster_agents_requests``. This stand-in does
exactly that, on a test's own queues. ``answers`` maps a request queue to a
function from the request body to the reply body (or None: no reply); a queue
not in ``answers`` is not consumed at all.
"""

from __future__ import annotations

import datetime
import json
import threading
from typing import Any, Callable

import pika

Answer = Callable[[dict[str, Any]], dict[str, Any] | None]
Properties = Callable[[Any], pika.BasicProperties]


def legacy_properties(request_properties: Any) -> pika.BasicProperties:
    """What the real peers set on a reply: persistent, and nothing else."""
    return pika.BasicProperties(delivery_mode=2)


def legacy_timestamp() -> str:
    """What the real peers put in ``timestamp``: ``datetime.now().isoformat()``."""
    return datetime.datetime.now().isoformat()


class LegacyPeers:
    """One pika connection in its own thread; consumes the request queues in ``answers``."""

    def __init__(self, answers: dict[str, Answer], results: dict[str, str],
                 properties: Properties = legacy_properties) -> None:
        self.answers = answers
        self.results = results  # request queue -> the fixed results queue it answers on
        self.properties = properties  # request properties -> reply properties
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="legacy-peers", daemon=True)

    def start(self, timeout: float = 15.0) -> "LegacyPeers":
        self._thread.start()
        if not self._ready.wait(timeout):
            raise AssertionError(f"legacy peers did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def count(self, queue: str) -> int:
        return sum(1 for name, _ in self.requests if name == queue)

    def _run(self) -> None:
        try:
            connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
        except BaseException as error:  # reported by start()
            self._error = error
            return
        try:
            channel = connection.channel()
            for queue in list(self.answers) + list(self.results.values()):
                channel.queue_declare(queue=queue, durable=True)
            for queue in self.answers:
                channel.basic_consume(queue, self._handler(queue))
            self._ready.set()
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.2)
        finally:
            try:
                connection.close()
            except Exception:  # nosec B110 - the broker may already be gone
                pass

    def _handler(self, queue: str) -> Callable[..., None]:
        def on_message(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            request = json.loads(body)
            self.requests.append((queue, request))
            reply = self.answers[queue](request)
            if reply is not None:
                channel.basic_publish(
                    exchange="", routing_key=self.results[queue],
                    body=json.dumps(reply).encode(), properties=self.properties(properties))
            channel.basic_ack(method.delivery_tag)
        return on_message
