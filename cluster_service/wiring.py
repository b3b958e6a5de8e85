"""The per-process service objects, wired together once and kept in ``app.extensions``.

Nothing here connects at construction: the RPC client starts its I/O thread on
first use, or when gunicorn's ``post_worker_init`` hook calls :func:`start`,
which is always after fork.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from .api.audit import audit_auth
from .domain.auth import Authenticator, UserServiceClient
from .domain.auth_events import AuthEventHandler
from .domain.auth_guard import AuthFailureGuard
from .domain.clusters import ClusterOperations
from .config import Settings
from .observability.observer import Observer
from .rpc.client import RpcClient, Transport
from .domain.shared_auth_cache import SharedAuthCache

EXTENSION = "cluster_service"


@dataclass
class Services:
    """Everything a view needs, built from one Settings."""

    settings: Settings
    rpc: RpcClient
    auth: Authenticator
    clusters: ClusterOperations
    observer: Observer


def build_services(settings: Settings, observer: Observer,
                   transport: Transport | None = None) -> Services:
    """Wire the layers: transport → RPC client → auth and cluster operations."""
    if transport is None:
        from .rpc.pika_transport import PikaTransport  # the api layer never imports pika
        transport = PikaTransport(settings, observer, peer_names(settings))
    rpc = RpcClient(transport, fixed_queues=settings.result_queues,
                    connect_wait=settings.broker_connect_wait, observer=observer,
                    max_reply_bytes=settings.max_reply_bytes,
                    max_inflight=settings.max_inflight_rpcs, peers=peer_names(settings))
    fallback = UserServiceClient(settings) if settings.user_service_url else None
    guard = AuthFailureGuard(settings)
    shared = SharedAuthCache(settings, observer) if settings.auth_cache_uri else None
    auth = Authenticator(settings, rpc, fallback, observer, audit_auth, guard, shared)
    events = AuthEventHandler(auth, observer)
    transport.listen(settings.auth_events_exchange, events, events.on_gap)
    return Services(settings=settings, rpc=rpc, auth=auth,
                    clusters=ClusterOperations(settings, rpc, observer),
                    observer=observer)


def peer_names(settings: Settings) -> dict[str, str]:
    """Which peer consumes each request queue (named in 503s and logs when it is missing)."""
    return {settings.auth_request_queue: "User Service",
            settings.namespace_request_queue: "Onboarding Service",
            settings.agents_request_queue: "Onboarding Service"}


def init_app(app: Flask, services: Services) -> None:
    """Record the services on the app."""
    app.extensions[EXTENSION] = services


def services() -> Services:
    """The current app's services (inside a request or app context)."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def start(app: Flask) -> None:
    """Start the broker connection now (gunicorn calls this after fork)."""
    app.extensions[EXTENSION].rpc.start()


def stop(app: Flask, timeout: float = 5.0) -> None:
    """Close the broker connection cleanly (gunicorn calls this when a worker exits)."""
    app.extensions[EXTENSION].rpc.close(timeout)
