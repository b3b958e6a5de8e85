"""How this service connects to RabbitMQ and labels what it publishes: one place for the
parameters (the workers
I/O threads and ``python -m cluster_service.revoke`` both use them)."""

from __future__ import annotations

import os
import socket
from typing import Any

import pika
from pika.spec import BasicProperties

from ..config import Settings
from .request_ids import new_token, reply_queue_name
from .transport import OutgoingRequest

APP_ID = "cluster_service"


def connection_parameters(settings: Settings) -> pika.ConnectionParameters:
    """pika parameters from settings; short socket timeouts so a dead broker is noticed fast."""
    return pika.ConnectionParameters(
        host=settings.rabbitmq_host,
        port=settings.rabbitmq_port,
        virtual_host=settings.rabbitmq_vhost,
        credentials=pika.PlainCredentials(settings.rabbitmq_user, settings.rabbitmq_password),
        heartbeat=settings.rabbitmq_heartbeat,
        blocked_connection_timeout=30,
        connection_attempts=1,
        socket_timeout=5,
        stack_timeout=10,
        client_properties={"connection_name": f"cluster_service {socket.gethostname()} "
                                              f"pid {os.getpid()}"},
    )


def declare_shared_queues(channel: Any, request_queues: tuple[str, ...],
                          result_queues: tuple[str, ...]) -> dict[str, int]:
    """Declare the peers' queues as they do (durable, no arguments: anything else fails
    with PRECONDITION_FAILED); the consumer count of each request queue."""
    consumers = {}
    for queue in request_queues + result_queues:
        declared = channel.queue_declare(queue=queue, durable=True)
        if queue in request_queues:
            consumers[queue] = int(declared.method.consumer_count)
    return consumers


def declare_reply_queue(channel: Any, reply_exchange: str) -> tuple[str, str]:
    """A new owner token and its exclusive reply queue, bound to the reply fanout exchange."""
    channel.exchange_declare(reply_exchange, exchange_type="fanout", durable=True)
    token = new_token()
    reply_queue = reply_queue_name(token)
    channel.queue_declare(queue=reply_queue, exclusive=True, auto_delete=True)
    channel.queue_bind(reply_queue, reply_exchange)
    return token, reply_queue


def request_properties(request: OutgoingRequest, reply_queue: str) -> BasicProperties:
    """The properties of one request message (the contract's AMQP section)."""
    return BasicProperties(
        content_type="application/json",
        correlation_id=request.request_id,
        reply_to=reply_queue,
        expiration=str(request.expiration_ms),
        delivery_mode=pika.DeliveryMode.Transient,  # API keys never reach the broker's disk
        app_id=APP_ID,
        headers={"x-request-id": request.http_request_id},
    )


def close_quietly(connection: Any) -> None:
    try:
        if connection.is_open:
            connection.close()
    except Exception:  # nosec B110
        # The connection is being abandoned either way.
        pass
