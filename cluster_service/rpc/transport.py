"""The seam between :class:`~cluster_service.rpc.client.RpcClient` and the broker.

The client decides (which call a reply belongs to, where a stray reply goes);
a :class:`Transport` moves bytes: ``pika_transport.py`` in production, the fake
in ``tests/support/fake_transport.py`` in the unit tests.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Protocol


class ReplyOutcome(enum.Enum):
    """What :meth:`RpcClient.on_reply` did with a reply, or asks the transport to do."""

    DELIVERED = "delivered"
    FORWARD = "forward"  # publish to Routing.forward_to, the owner's reply queue
    BROADCAST = "broadcast"  # legacy id: publish to the reply fanout exchange
    DROPPED = "dropped"


@dataclass(frozen=True)
class Routing:
    """The verdict on one reply; ``forward_to`` is set for FORWARD only."""

    outcome: ReplyOutcome
    forward_to: str = ""


DELIVERED = Routing(ReplyOutcome.DELIVERED)
BROADCAST = Routing(ReplyOutcome.BROADCAST)
DROPPED = Routing(ReplyOutcome.DROPPED)


@dataclass(frozen=True)
class OutgoingRequest:
    """Everything the transport needs to publish one request message."""

    queue: str
    body: bytes
    call_id: str
    request_id: str
    expiration_ms: int


class Transport(Protocol):
    """What :class:`RpcClient` needs from the broker side."""

    def start(self, on_reply: Callable[..., Routing],
              on_connection_change: Callable[..., None]) -> None:
        """Begin connecting in the transport's own thread; return at once.

        ``on_connection_change(True, token)`` reports a connection whose reply
        queue is ``call_ids.reply_queue_name(token)``; ``(False)`` its loss.
        """

    def publish(self, request: OutgoingRequest, on_failure: Callable[[str], None]) -> None:
        """Hand a request to the I/O thread; raise BrokerUnavailable if it cannot take it."""

    def listen(self, exchange: str, handler: Callable[[bytes], None],
               on_gap: Callable[[], None] | None = None,
               on_foreign: Callable[[], None] | None = None) -> None:
        """Before start: call ``handler(body)`` in the I/O thread for each message on the
        fanout ``exchange`` (the auth events), ``on_gap()`` after each reconnect (what
        was published meanwhile was missed), and ``on_foreign()`` for a message that
        reached the queue other than through the exchange (dropped); none may block
        or raise."""

    def close(self, timeout: float) -> None:
        """Close the connection cleanly and stop the I/O thread."""

    def consumer_count(self, queue: str) -> int | None:
        """How many consumers ``queue`` has, from a cache refreshed every second or so;
        None when unknown. Never more than a short, bounded wait."""
