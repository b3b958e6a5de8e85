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
from ..config.nodes import node_label
from .broker_tls import ssl_options, tls_context
from .call_ids import new_token, reply_queue_name
from .transport import OutgoingRequest

APP_ID = "cluster_service"


def connection_parameters(settings: Settings) -> list[pika.ConnectionParameters]:
    """pika parameters for each node of ``RABBITMQ_HOST``, in the order they are tried.

    Each attempt is bounded by ``RABBITMQ_CONNECT_TIMEOUT``: ``socket_timeout``
    bounds the TCP connect, ``stack_timeout`` the whole TCP + TLS + AMQP
    handshake, so a black-holed node (accepts, never speaks) costs no more than
    that before the next node is tried. With ``RABBITMQ_TLS`` every node is
    verified under its own name (``broker_tls.py``).
    """
    context = tls_context(settings) if settings.rabbitmq_tls else None
    credentials = pika.PlainCredentials(settings.rabbitmq_user, settings.rabbitmq_password)
    name = f"cluster_service {socket.gethostname()} pid {os.getpid()}"
    return [pika.ConnectionParameters(
        host=host,
        port=port,
        virtual_host=settings.rabbitmq_vhost,
        credentials=credentials,
        ssl_options=ssl_options(context, host) if context is not None else None,
        heartbeat=settings.rabbitmq_heartbeat,
        blocked_connection_timeout=30,
        connection_attempts=1,
        socket_timeout=settings.rabbitmq_connect_timeout,
        stack_timeout=settings.rabbitmq_connect_timeout,
        client_properties={"connection_name": name},
    ) for host, port in settings.broker_nodes]


def node_of(params: pika.ConnectionParameters) -> str:
    """``host:port`` of the node ``params`` connects to (logs, metrics, ``/ready``)."""
    return node_label(params.host, params.port)


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
        correlation_id=request.call_id,
        reply_to=reply_queue,
        expiration=str(request.expiration_ms),
        delivery_mode=pika.DeliveryMode.Transient,  # API keys never reach the broker's disk
        app_id=APP_ID,
        headers={"x-request-id": request.request_id},
    )


def close_quietly(connection: Any) -> None:
    try:
        if connection.is_open:
            connection.close()
    except Exception:  # nosec B110
        # The connection is being abandoned either way.
        pass
