"""The composition root: every per-process object, built once from one Settings.

Nothing here connects at construction: the RPC client starts its I/O thread on
first use, or when gunicorn's ``post_worker_init`` hook calls
:func:`cluster_service.api.extension.start`, which is always after fork.
"""

from __future__ import annotations

from .api.extension import Services
from .config import Settings
from .domain.auth import Authenticator
from .domain.users import UserServiceClient
from .domain.auth_events import AuthEventHandler
from .domain.auth_guard import AuthFailureGuard
from .domain.clusters import ClusterOperations
from .domain.shared_auth_cache import SharedAuthCache
from .observability.observer import Observer
from .rpc.client import RpcClient
from .rpc.transport import Transport
from .rpc.pika_transport import PikaTransport


def build_services(settings: Settings, observer: Observer,
                   transport: Transport | None = None) -> Services:
    """Wire the layers: transport → RPC client → auth and cluster operations."""
    if transport is None:
        transport = PikaTransport(settings, observer, peer_names(settings))
    rpc = RpcClient(transport, fixed_queues=settings.result_queues,
                    connect_wait=settings.broker_connect_wait, observer=observer,
                    max_reply_bytes=settings.max_reply_bytes,
                    largest_reply_bytes=settings.max_operation_reply_bytes,
                    max_inflight=settings.max_inflight_rpcs, peers=peer_names(settings))
    fallback = UserServiceClient(settings) if settings.user_service_url else None
    guard = AuthFailureGuard(settings)
    shared = SharedAuthCache(settings, observer) if settings.auth_cache_uri else None
    auth = Authenticator(settings, rpc, fallback, observer, guard=guard, shared=shared)
    events = AuthEventHandler(auth, observer)
    transport.listen(settings.auth_events_exchange, events, events.on_gap, events.foreign)
    return Services(settings=settings, rpc=rpc, auth=auth,
                    clusters=ClusterOperations(settings, rpc, observer),
                    observer=observer)


def peer_names(settings: Settings) -> dict[str, str]:
    """Which peer consumes each request queue (named in 503s and logs when it is missing)."""
    return {settings.auth_request_queue: "User Service",
            settings.namespace_request_queue: "Onboarding Service",
            settings.agents_request_queue: "Onboarding Service",
            settings.operation_request_queue: "Onboarding Service"}
