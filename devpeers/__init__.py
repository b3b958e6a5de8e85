"""DEVELOPMENT STAND-IN peers for the Cluster Service. Never run this in production.

`python -m devpeers` plays the User Service (API-key auth) and the
Onboarding Service (namespaces, connected agents, cluster operations) over a
real RabbitMQ, so the Cluster Service can be demonstrated, tested and
benchmarked without the real peers. It follows the AMQP section of
`contract.md`: it declares its eight queues durable with no other arguments,
consumes the four request queues and answers either to `reply_to` (with
`correlation_id`) or on the fixed results queue, as the legacy peers do
(`--reply-style`).

It accepts well-known demo API keys and invents Kubernetes clusters (`cluster`:
nodes, namespaces, pods, deployments, services, logs, in the Go agent's shapes;
`operations`: served from cached bytes). The agent's size, latency, a changing
list, its namespace shape and its faults are chosen by the agent id
(`agent_ids` has the grammar, `behaviour` the faults). Nothing here
authenticates anybody for real.

Tests use the importable API::

    from devpeers import DevPeers, PeerConfig

    peers = DevPeers(PeerConfig().with_queue_prefix("test-1234-")).start()
    ...
    peers.stop()

This package imports nothing from the rest of `cluster_service` (and no Flask),
so it can run beside any version of the service.
"""

from .agent_ids import AgentTraits, parse_agent_id
from .behaviour import Behaviour, Reply, simulated_namespaces
from .config import PeerConfig, default_api_keys, fingerprint
from .peers import DevPeers

__all__ = [
    "AgentTraits",
    "Behaviour",
    "DevPeers",
    "PeerConfig",
    "Reply",
    "default_api_keys",
    "fingerprint",
    "parse_agent_id",
    "simulated_namespaces",
]
