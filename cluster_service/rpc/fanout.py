"""Listening on a fanout exchange (the auth events): one exclusive queue per listener,
named after the connection's reply queue (so one permission pattern covers all
of a worker's own queues: ``broker_permissions.py``), consumed with auto-ack,
and a handler that can never take the I/O thread down.

Only messages delivered through the exchange itself are handed to the handler.
Anyone allowed to publish to the default exchange can put a message straight
into a queue whose name they know; the delivery says which exchange it came
through (``Basic.Deliver.exchange``), and such a message is dropped and
reported (``on_foreign``), with one log line at most every ``_LOG_EVERY_S``.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Callable

from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

log = logging.getLogger("cluster_service.rpc.pika_transport")  # the transport's log lines

_LOG_EVERY_S = 10.0
_last_logged = [float("-inf")]


def declare_listener(channel: BlockingChannel, exchange: str, queue: str,
                     handler: Callable[[bytes], None],
                     on_foreign: Callable[[], None] | None = None) -> None:
    """Declare ``exchange`` (durable fanout) and our exclusive ``queue`` on it; consume it."""
    channel.exchange_declare(exchange, exchange_type="fanout", durable=True)
    channel.queue_declare(queue=queue, exclusive=True, auto_delete=True)
    channel.queue_bind(queue, exchange)
    channel.basic_consume(queue, functools.partial(_on_event, exchange, handler, on_foreign),
                          auto_ack=True)


def _on_event(exchange: str, handler: Callable[[bytes], None],
              on_foreign: Callable[[], None] | None, channel: BlockingChannel,
              method: Basic.Deliver, properties: BasicProperties, body: bytes) -> None:
    """Called by pika for each message on a listener's queue; never raises."""
    if method.exchange != exchange:
        if on_foreign is not None:
            call_quietly(on_foreign, exchange)
        now = time.monotonic()
        if now - _last_logged[0] >= _LOG_EVERY_S:
            _last_logged[0] = now
            log.warning("event not delivered through its exchange, dropped", extra={
                "event": "event_wrong_exchange", "exchange": exchange,
                "delivered_via": method.exchange or "(default)"})
        return
    call_quietly(functools.partial(handler, body), exchange)


def call_quietly(work: Callable[[], None], exchange: str = "") -> None:
    """Run ``work``; an exception is logged (its type only) and dropped."""
    try:
        work()
    except Exception as error:
        log.warning("event could not be handled, dropped", extra={
            "event": "event_unhandled", "exchange": exchange or None,
            "error_type": type(error).__name__})
