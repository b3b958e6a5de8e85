"""Broker housekeeping: the run's queue names, declaring and deleting them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import pika
from pika.exceptions import AMQPError


@dataclass(frozen=True)
class BrokerEnv:
    """Where RabbitMQ is, in the service's own variable names."""

    host: str = "127.0.0.1"
    port: int = 5672
    user: str = "guest"
    password: str = "guest"  # nosec B105 - RabbitMQ's local default
    vhost: str = "/"

    @classmethod
    def from_environ(cls) -> "BrokerEnv":
        env = os.environ
        return cls(host=env.get("RABBITMQ_HOST", "127.0.0.1"),
                   port=int(env.get("RABBITMQ_PORT", "5672")),
                   user=env.get("RABBITMQ_USER", "guest"),
                   password=env.get("RABBITMQ_PASSWORD", "guest"),
                   vhost=env.get("RABBITMQ_VHOST", "/"))

    def as_env(self) -> dict[str, str]:
        return {"RABBITMQ_HOST": self.host, "RABBITMQ_PORT": str(self.port),
                "RABBITMQ_USER": self.user, "RABBITMQ_PASSWORD": self.password,
                "RABBITMQ_VHOST": self.vhost}

    def connect(self) -> pika.BlockingConnection:
        credentials = pika.PlainCredentials(self.user, self.password)
        return pika.BlockingConnection(pika.ConnectionParameters(
            host=self.host, port=self.port, virtual_host=self.vhost,
            credentials=credentials, connection_attempts=1, socket_timeout=5))


@dataclass(frozen=True)
class RunNames:
    """Queue and exchange names unique to one bench run (``bench-<pid>-...``)."""

    prefix: str

    @property
    def echo_queue(self) -> str:
        return f"{self.prefix}echo"

    def service_env(self) -> dict[str, str]:
        """The service's and the stand-in peers' queue-name variables."""
        return {
            "AUTH_REQUEST_QUEUE": f"{self.prefix}auth-requests",
            "AUTH_RESULT_QUEUE": f"{self.prefix}auth-results",
            "NAMESPACE_REQUEST_QUEUE": f"{self.prefix}namespace-requests",
            "NAMESPACE_RESULT_QUEUE": f"{self.prefix}namespace-results",
            "AGENTS_REQUEST_QUEUE": f"{self.prefix}agents-requests",
            "AGENTS_RESULT_QUEUE": f"{self.prefix}agents-results",
            "OPERATION_REQUEST_QUEUE": f"{self.prefix}operation-requests",
            "OPERATION_RESULT_QUEUE": f"{self.prefix}operation-results",
            "REPLY_EXCHANGE": f"{self.prefix}replies",
        }

    def queues(self) -> list[str]:
        env = self.service_env()
        return [self.echo_queue] + [v for k, v in env.items() if k.endswith("_QUEUE")]

    def exchanges(self) -> list[str]:
        return [self.service_env()["REPLY_EXCHANGE"]]


def check_broker(broker: BrokerEnv) -> None:
    """Raise a clear error when RabbitMQ cannot be reached."""
    try:
        broker.connect().close()
    except AMQPError as err:
        raise RuntimeError(f"RabbitMQ not reachable at {broker.host}:{broker.port}: "
                           f"{err!r}") from None


def declare_queue(broker: BrokerEnv, name: str) -> None:
    """Declare a transient queue before anyone publishes to it."""
    connection = broker.connect()
    try:
        connection.channel().queue_declare(name)
    finally:
        connection.close()


def delete_all(broker: BrokerEnv, queues: Iterable[str], exchanges: Iterable[str]) -> None:
    """Delete the run's queues and exchanges; best effort, each on a fresh channel."""
    try:
        connection = broker.connect()
    except AMQPError:
        return
    try:
        for kind, names in (("queue", queues), ("exchange", exchanges)):
            for name in names:
                try:
                    channel = connection.channel()
                    if kind == "queue":
                        channel.queue_delete(name)
                    else:
                        channel.exchange_delete(name)
                    channel.close()
                except AMQPError:
                    if not connection.is_open:
                        return
    finally:
        if connection.is_open:
            connection.close()
