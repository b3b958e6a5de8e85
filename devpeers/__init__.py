"""DEVELOPMENT STAND-IN peers for the Cluster Service. Never run this in production.

`python -m devpeers` plays the User Service (API-key auth) and the
Onboarding Service (namespaces, connected agents) over a real RabbitMQ, so the
Cluster Service can be demonstrated, tested and benchmarked without the real
peers. It follows the AMQP section of `contract.md`: it declares the six queues
durable with no other arguments, consumes the three request queues and answers
either to `reply_to` (with `correlation_id`) or on the fixed results queue, as
the legacy peers do (`--reply-style`).

It accepts well-known demo API keys and invents Kubernetes namespaces; fault
behaviour is chosen by agent-id conventions (see `behaviour`). Nothing here
authenticates anybody for real.

Tests use the importable API::

    from devpeers import DevPeers, PeerConfig

    peers = DevPeers(PeerConfig().with_queue_prefix("test-1234-")).start()
    ...
    peers.stop()

This package imports nothing from the rest of `cluster_service` (and no Flask),
so it can run beside any version of the service.
"""

from .behaviour import Behaviour, Reply, simulated_namespaces
from .config import PeerConfig, default_api_keys, fingerprint
from .peers import DevPeers

__all__ = [
    "Behaviour",
    "DevPeers",
    "PeerConfig",
    "Reply",
    "default_api_keys",
    "fingerprint",
    "simulated_namespaces",
]
