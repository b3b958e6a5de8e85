"""An in-memory Transport for fast unit tests of the RPC logic and the app.

A test installs a ``responder`` per queue: a function from the request body
(dict) to a list of replies (each ``(body, delay)``), or ``None`` for silence.
Replies are delivered from a timer thread, like the real I/O thread would.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable

from cluster_service.errors import BrokerUnavailable
from cluster_service.rpc.transport import OutgoingRequest, ReplyOutcome, Routing
from cluster_service.rpc.call_ids import new_token, reply_queue_name

Responder = Callable[[dict[str, Any]], list[tuple[bytes | dict[str, Any], float]] | None]


class FakeTransport:
    """Records every publish and answers through per-queue responders."""

    def __init__(self, connected: bool = True, token: str | None = None) -> None:
        self.initially_connected = connected
        self.token = token or new_token()
        self.reply_queue = reply_queue_name(self.token)
        self.published: list[OutgoingRequest] = []
        self.responders: dict[str, Responder] = {}
        self.reply_via_queue: dict[str, str] = {}
        self.rerouted: list[bytes] = []  # broadcast to the fanout exchange
        self.forwarded: list[tuple[str, bytes]] = []  # (owner's queue, body)
        self.listeners: dict[str, Callable[[bytes], None]] = {}
        self.gap_handlers: list[Callable[[], None]] = []
        self.consumers: dict[str, int] = {}  # queue -> consumer count; absent = unknown
        self.closed = False
        self._on_reply: Callable[..., Routing] | None = None
        self._on_change: Callable[..., None] | None = None
        self._lock = threading.Lock()
        self._connected = False
        self._was_connected = False

    def start(self, on_reply: Callable[..., Routing],
              on_connection_change: Callable[..., None]) -> None:
        self._on_reply, self._on_change = on_reply, on_connection_change
        self.set_connected(self.initially_connected)

    def set_connected(self, connected: bool) -> None:
        self._connected = connected
        assert self._on_change is not None
        if connected:
            if self._was_connected:
                for on_gap in self.gap_handlers:
                    on_gap()
            self._was_connected = True
            self._on_change(True, self.token)
        else:
            self._on_change(False)

    def publish(self, request: OutgoingRequest, on_failure: Callable[[str], None]) -> None:
        if not self._connected:
            raise BrokerUnavailable()
        with self._lock:
            self.published.append(request)
        responder = self.responders.get(request.queue)
        body = json.loads(request.body)
        replies = responder(body) if responder else None
        source = self.reply_via_queue.get(request.queue, self.reply_queue)
        for reply, delay in replies or []:
            raw = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
            correlation = request.call_id if source == self.reply_queue else None
            timer = threading.Timer(delay, self.deliver, (source, raw, correlation))
            timer.daemon = True
            timer.start()

    def deliver(self, source: str, body: bytes, correlation_id: str | None,
                relayed: bool = False) -> ReplyOutcome:
        """Hand a reply to the client as the I/O thread would; return what it decided."""
        assert self._on_reply is not None
        routing = self._on_reply(source, body, correlation_id, relayed)
        if routing.outcome is ReplyOutcome.BROADCAST:
            self.rerouted.append(body)
        elif routing.outcome is ReplyOutcome.FORWARD:
            self.forwarded.append((routing.forward_to, body))
        return routing.outcome

    def listen(self, exchange: str, handler: Callable[[bytes], None],
               on_gap: Callable[[], None] | None = None,
               on_foreign: Callable[[], None] | None = None) -> None:
        self.listeners[exchange] = handler
        if on_gap is not None:
            self.gap_handlers.append(on_gap)

    def emit(self, exchange: str, body: bytes) -> None:
        """Deliver one message from a fanout exchange, as the I/O thread would."""
        self.listeners[exchange](body)

    def close(self, timeout: float) -> None:
        self.closed = True

    def consumer_count(self, queue: str) -> int | None:
        return self.consumers.get(queue)

    def count(self, queue: str) -> int:
        with self._lock:
            return sum(1 for p in self.published if p.queue == queue)
