"""Play a peer by hand: consume request queues and hand each message to the test.

A consumer, not ``basic_get``: the service answers 503 at once when nobody
consumes a request queue, so a test that reads requests must be a consumer
(and should start before the service, so the service's first look at the
queue already counts it).
"""

from __future__ import annotations

import json
from typing import Any

import pika

from .service import wait_for


class RequestTap:
    """Consumes ``queues`` on ``connection`` (declared as the peers do) and queues up messages."""

    def __init__(self, connection: pika.BlockingConnection, queues: list[str]) -> None:
        self.connection = connection
        self.channel = connection.channel()
        self.received: dict[str, list[tuple[Any, bytes]]] = {queue: [] for queue in queues}
        for queue in queues:
            self.channel.queue_declare(queue=queue, durable=True)
            self.channel.basic_consume(queue, self._collector(queue), auto_ack=True)

    def _collector(self, queue: str) -> Any:
        def collect(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            self.received[queue].append((properties, body))
        return collect

    def next_raw(self, queue: str, timeout: float = 10) -> tuple[Any, bytes]:
        """The next message on ``queue``: (properties, body bytes)."""
        def get() -> Any:
            self.connection.process_data_events(time_limit=0.05)
            return self.received[queue].pop(0) if self.received[queue] else None

        return wait_for(get, timeout, interval=0.01,  # type: ignore[no-any-return]
                        what=f"a message on {queue}")

    def next(self, queue: str, timeout: float = 10) -> tuple[Any, dict[str, Any]]:
        """The next message on ``queue``: (properties, body as JSON)."""
        properties, body = self.next_raw(queue, timeout)
        return properties, json.loads(body)
