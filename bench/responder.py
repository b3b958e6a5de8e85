"""An instant RPC responder: answers every request on a queue with ``{"ok": true}``.

Run as ``python -m bench.responder --queue NAME``. Replies go to the request's
``reply_to`` with its ``correlation_id``. It stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
from types import FrameType
from typing import Any

import pika
from pika.adapters.blocking_connection import BlockingChannel

REPLY = b'{"ok": true}'


def connect() -> pika.BlockingConnection:
    """Connect with the same RABBITMQ_* variables as the service."""
    credentials = pika.PlainCredentials(os.environ.get("RABBITMQ_USER", "guest"),
                                        os.environ.get("RABBITMQ_PASSWORD", "guest"))
    return pika.BlockingConnection(pika.ConnectionParameters(
        host=os.environ.get("RABBITMQ_HOST", "127.0.0.1"),
        port=int(os.environ.get("RABBITMQ_PORT", "5672")),
        virtual_host=os.environ.get("RABBITMQ_VHOST", "/"),
        credentials=credentials))


def serve(queue: str) -> None:
    """Consume ``queue`` until a stop signal arrives."""
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    connection = connect()
    channel = connection.channel()
    channel.queue_declare(queue)
    channel.basic_qos(prefetch_count=256)

    def on_request(ch: BlockingChannel, _method: Any, props: pika.BasicProperties,
                   _body: bytes) -> None:
        if props.reply_to:
            reply_props = pika.BasicProperties(correlation_id=props.correlation_id,
                                               content_type="application/json")
            ch.basic_publish("", props.reply_to, REPLY, reply_props)

    channel.basic_consume(queue, on_request, auto_ack=True)
    try:
        while not stopping:
            connection.process_data_events(time_limit=0.2)
    finally:
        if connection.is_open:
            connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue", required=True)
    serve(parser.parse_args().queue)


if __name__ == "__main__":
    main()
