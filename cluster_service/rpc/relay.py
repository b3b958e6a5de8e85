"""Sending another worker's reply on, marked so that nobody relays it twice.

A reply taken from a shared results queue that belongs to another worker is either
forwarded to its owner's reply queue through the default exchange (``mandatory``:
if that queue is gone the broker returns it, counted as ``owner_gone``), or, for an
id that names no owner, broadcast on the reply fanout exchange. Either way the copy
carries a header naming the queue it was first taken from; ``client.RpcClient``
never relays a marked reply again, so nothing loops. Runs in the I/O thread only.
"""

from __future__ import annotations

import logging
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from ..observability.observer import Observer

from .pika_connection import APP_ID
from .transport import ReplyOutcome, Routing

log = logging.getLogger("cluster_service.rpc.pika_transport")  # the transport's log lines

REROUTED_HEADER = "x-rerouted-from"  # broadcast through the fanout exchange
FORWARDED_HEADER = "x-forwarded-from"  # sent to the owner's queue only


def relayed_from(properties: BasicProperties) -> str | None:
    """The fixed queue a relayed reply was first taken from; None for a first delivery."""
    headers: dict[str, Any] = properties.headers or {}
    source = headers.get(FORWARDED_HEADER, headers.get(REROUTED_HEADER))
    return None if source is None else str(source)


def relay(channel: BlockingChannel, routing: Routing, queue: str, properties: BasicProperties,
          body: bytes, *, reply_exchange: str, ttl_ms: str) -> None:
    """Carry out a FORWARD or BROADCAST verdict for a reply taken from ``queue``."""
    if routing.outcome is ReplyOutcome.FORWARD:
        exchange, routing_key, header = "", routing.forward_to, FORWARDED_HEADER
    elif routing.outcome is ReplyOutcome.BROADCAST:
        exchange, routing_key, header = reply_exchange, "", REROUTED_HEADER
    else:
        return
    channel.basic_publish(
        exchange=exchange, routing_key=routing_key, body=body, mandatory=bool(routing_key),
        properties=BasicProperties(
            content_type=properties.content_type,
            correlation_id=properties.correlation_id,
            delivery_mode=pika.DeliveryMode.Transient,
            expiration=ttl_ms,
            app_id=APP_ID,
            headers={header: queue}))


def on_returned(observer: Observer, channel: BlockingChannel, method: Basic.Return,
                properties: BasicProperties, body: bytes) -> None:
    """Called by pika when the broker returns a forward: its owner's queue is gone."""
    observer.reply_dropped("owner_gone")
    log.debug("forwarded reply returned, its owner is gone",
              extra={"queue": method.routing_key, "reply_code": method.reply_code})
