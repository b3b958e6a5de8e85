"""The per-process service objects, kept in ``app.extensions`` for the views.

:mod:`cluster_service.wiring` builds a :class:`Services`; the views read it
with :func:`services`. Nothing here connects: gunicorn's ``post_worker_init``
hook calls :func:`start`, always after fork.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, current_app

from ..config import Settings
from ..domain.auth import Authenticator
from ..domain.clusters import ClusterOperations
from ..observability.observer import Observer
from ..rpc.client import RpcClient

EXTENSION = "cluster_service"


@dataclass
class Services:
    """Everything a view needs, built from one Settings."""

    settings: Settings
    rpc: RpcClient
    auth: Authenticator
    clusters: ClusterOperations
    observer: Observer


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
