"""Listening on a fanout exchange (the auth events): one server-named exclusive queue
per listener, consumed with auto-ack, and a handler that can never take the I/O
thread down."""

from __future__ import annotations

import functools
import logging
from typing import Callable

from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

log = logging.getLogger("cluster_service.rpc.pika_transport")  # the transport's log lines


def declare_listener(channel: BlockingChannel, exchange: str,
                     handler: Callable[[bytes], None]) -> None:
    """Declare ``exchange`` (durable fanout) and a queue of our own on it; consume it."""
    channel.exchange_declare(exchange, exchange_type="fanout", durable=True)
    queue = channel.queue_declare(queue="", exclusive=True, auto_delete=True).method.queue
    channel.queue_bind(queue, exchange)
    channel.basic_consume(queue, functools.partial(_on_event, exchange, handler), auto_ack=True)


def _on_event(exchange: str, handler: Callable[[bytes], None], channel: BlockingChannel,
              method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
    """Called by pika for each message on a listener's queue; never raises."""
    call_quietly(functools.partial(handler, body), exchange)


def call_quietly(work: Callable[[], None], exchange: str = "") -> None:
    """Run ``work``; an exception is logged (its type only) and dropped."""
    try:
        work()
    except Exception as error:
        log.warning("event could not be handled, dropped", extra={
            "event": "event_unhandled", "exchange": exchange or None,
            "error_type": type(error).__name__})
