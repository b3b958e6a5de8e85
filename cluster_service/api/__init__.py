"""HTTP blueprints, one per resource, all under :data:`BASE_PATH`."""

from __future__ import annotations

from flask import Flask

BASE_PATH = "/api/v3.0/cluster"


def register_blueprints(app: Flask) -> None:
    """Attach every blueprint to ``app``."""
    from . import agents, health, meta, namespaces

    for module in (health, namespaces, agents, meta):
        app.register_blueprint(module.bp, url_prefix=BASE_PATH)
