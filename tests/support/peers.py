"""Run the stand-in peers in-process against the real broker, on a test's own queues."""

from __future__ import annotations

import dataclasses
from typing import Any

import pika

from devpeers import DevPeers, PeerConfig


def start_peers(prefix: str, **overrides: Any) -> DevPeers:
    """DevPeers answering on ``prefix``-ed queues; ``overrides`` set PeerConfig fields."""
    config = dataclasses.replace(PeerConfig().with_queue_prefix(prefix), **overrides)
    return DevPeers(config).start(timeout=15)


def wrong_namespaces(response: Any, agent_id: str, cluster_id: int) -> str | None:
    """Why a /namespaces response is not the stand-in peers' answer for ``agent_id``, or None."""
    if response.status_code != 200:
        return f"{agent_id}: {response.status_code} {response.text[:200]}"
    body = response.json()
    teams = [ns["name"] for ns in body["namespaces"] if ns["name"].startswith("team-")]
    if body["agent_id"] != agent_id or body["cluster_id"] != cluster_id \
            or teams != [f"team-{agent_id}"]:
        return f"{agent_id}: wrong body {body}"
    return None


def delete_queues(prefix: str) -> None:
    """Remove the durable queues and the exchange a test created."""
    from .service import queue_env

    connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1"))
    try:
        channel = connection.channel()
        names = queue_env(prefix)
        for variable, name in names.items():
            if variable.endswith("_EXCHANGE"):
                channel.exchange_delete(name)
            else:
                channel.queue_delete(name)
    finally:
        connection.close()
