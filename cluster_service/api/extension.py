"""The per-process service objects, kept in ``app.extensions`` for the views.

:mod:`cluster_service.wiring` builds a :class:`Services`; the views read it
with :func:`services`. Nothing here connects: gunicorn's ``post_worker_init``
hook calls :func:`start`, always after fork.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flask import Flask, current_app

from ..config import Settings
from ..domain.auth import Authenticator
from ..domain.clusters import ClusterOperations
from ..observability.observer import Observer
from ..domain.api_key import ApiKey
from ..rpc.client import RpcClient

EXTENSION = "cluster_service"


class RateLimit(Protocol):
    """The per-key rate limit as ``require_user`` uses it (``limiter.KeyLimit``)."""

    def enforce(self, key: ApiKey | None, client: str | None) -> object:
        """Count one request; raise the 429 past the limit."""


@dataclass
class Services:
    """Everything a view needs, built from one Settings."""

    settings: Settings
    rpc: RpcClient
    auth: Authenticator
    clusters: ClusterOperations
    observer: Observer
    # The per-key rate limit (limiter.py sets it when RATE_LIMIT_ENABLED); None: no limit.
    key_limit: RateLimit | None = None


def init_app(app: Flask, services: Services) -> None:
    """Record the services on the app."""
    app.extensions[EXTENSION] = services


def services() -> Services:
    """The current app's services (inside a request or app context)."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def services_of(app: Flask) -> Services:
    """``app``'s services, outside a request."""
    return app.extensions[EXTENSION]  # type: ignore[no-any-return]


def start(app: Flask) -> None:
    """Start the broker connection now (gunicorn calls this after fork)."""
    app.extensions[EXTENSION].rpc.start()


def stop(app: Flask, timeout: float = 5.0) -> None:
    """Close the broker connection cleanly (gunicorn calls this when a worker exits)."""
    app.extensions[EXTENSION].rpc.close(timeout)
