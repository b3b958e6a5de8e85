"""``python -m cluster_service.revoke``: publish an auth event to every worker.

    python -m cluster_service.revoke --user-id 7   # the user's keys are asked again
    python -m cluster_service.revoke --flush       # every key is asked again

Uses the service's own settings (the environment, and ``.env`` in the working
directory): ``RABBITMQ_*`` and ``AUTH_EVENTS_EXCHANGE``. The exchange is
declared (durable fanout, as the workers declare it) and the event published
with publisher confirms, so exit status 0 means the broker took it; every
connected worker applies it within milliseconds (``auth_events.py``).
Exit status: 0 published, 1 broker unreachable or refused, 2 bad arguments or
configuration.
"""

from __future__ import annotations

import argparse
import sys

import pika
import pika.exceptions
from dotenv import load_dotenv

from .config import ConfigError, Settings, load_settings
from .config.nodes import node_label
from .domain.auth_events import CACHE_FLUSH, USER_REVOKED, AuthEvent
from .rpc.pika_connection import APP_ID, connection_parameters


def publish_event(settings: Settings, event: AuthEvent) -> None:
    """Publish ``event`` to the auth events exchange; raises pika errors or OSError."""
    connection = pika.BlockingConnection(connection_parameters(settings))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.exchange_declare(settings.auth_events_exchange, exchange_type="fanout",
                                 durable=True)
        channel.basic_publish(
            exchange=settings.auth_events_exchange, routing_key="", body=event.to_json(),
            properties=pika.BasicProperties(content_type="application/json",
                                            delivery_mode=pika.DeliveryMode.Transient,
                                            app_id=f"{APP_ID}.revoke"))
    finally:
        if connection.is_open:
            connection.close()


def parse_args(argv: list[str] | None) -> AuthEvent:
    parser = argparse.ArgumentParser(prog="python -m cluster_service.revoke",
                                     description="Drop cached API-key validations in every "
                                                 "worker of every replica.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--user-id", type=int, help="revoke every cached validation of this user")
    what.add_argument("--flush", action="store_true", help="drop every cached verdict")
    args = parser.parse_args(argv)
    if args.flush:
        return AuthEvent(CACHE_FLUSH)
    if not 0 <= args.user_id < 2**63:
        parser.error("--user-id must be between 0 and 2^63-1")
    return AuthEvent(USER_REVOKED, args.user_id)


def main(argv: list[str] | None = None) -> int:
    event = parse_args(argv)
    load_dotenv(".env")  # a process edge, like wsgi.py
    try:
        settings = load_settings()
    except ConfigError as error:
        print(f"cluster_service.revoke: configuration error: {error}", file=sys.stderr)
        return 2
    try:
        publish_event(settings, event)
    except (pika.exceptions.AMQPError, OSError) as error:
        nodes = ", ".join(node_label(host, port) for host, port in settings.broker_nodes)
        print(f"cluster_service.revoke: could not publish to {nodes}: {type(error).__name__}",
              file=sys.stderr)
        return 1
    target = f"user {event.user_id}" if event.user_id is not None else "every key"
    print(f"published {event.event} ({target}) to {settings.auth_events_exchange}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
