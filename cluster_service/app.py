"""The application factory.

``create_app`` builds the Flask app. It reads settings (or takes them from the
test), wires the layers and registers the blueprints; it connects to nothing.
"""

from __future__ import annotations

from flask import Flask

from .api import access_log, error_handlers, json_provider, limiter, request_id
from .api.extension import init_app as init_services
from .api.routes import AUTHENTICATED, register_blueprints
from .config import Settings, load_settings
from .domain.client_address import TrustedProxies
from .observability import metrics
from .observability.logging_observer import CompositeObserver, LoggingObserver
from .rpc.transport import Transport
from .wiring import build_services


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> Flask:
    """Build the app from ``settings`` (default: read from the environment).

    ``transport`` replaces the pika transport (unit tests pass a fake).
    """
    if settings is None:
        settings = load_settings()
    app = Flask(__name__)
    app.config.update(DEBUG=False, PROPAGATE_EXCEPTIONS=False, JSON_SORT_KEYS=False,
                      MAX_CONTENT_LENGTH=64 * 1024)
    json_provider.init_app(app)
    if settings.trusted_proxy_addresses:
        app.wsgi_app = TrustedProxies(  # type: ignore[method-assign]
            app.wsgi_app, settings.trusted_proxy_addresses)
    observer = CompositeObserver(LoggingObserver(), *(
        [metrics.PrometheusObserver()] if settings.metrics_enabled else []))
    init_services(app, build_services(settings, observer, transport))
    request_id.init_app(app)
    access_log.init_app(app, settings.metrics_enabled)
    error_handlers.init_app(app)
    register_blueprints(app)
    limiter.init_app(app, settings, list(AUTHENTICATED))
    return app
