"""KubeSage Cluster Service: on-demand Kubernetes cluster operations over RabbitMQ.

Importing the package is cheap and side-effect free: gunicorn's master imports
``cluster_service.config`` before forking, and must not create the Prometheus
metrics (they belong to the workers), so the factory is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["create_app"]


def create_app(*args: Any, **kwargs: Any) -> "Flask":
    """Build the Flask app; see :func:`cluster_service.app.create_app`."""
    from .app import create_app as factory

    return factory(*args, **kwargs)
