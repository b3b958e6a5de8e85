"""The application factory.

``create_app`` builds the Flask app. It reads settings (or takes them from the
test), wires the layers and registers the blueprints; it connects to nothing.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from flask import Flask

from .api import error_handlers, json_provider, limiter, request_cycle
from .api.extension import init_app as init_services
from .api.routes import NO_STORE, register_blueprints
from .api.trusted_proxies import TrustedProxies
from .config import Settings, load_settings
from .observability import metrics
from .observability.logging_observer import CompositeObserver, LoggingObserver
from .rpc.transport import Transport
from .wiring import build_services


class ServiceFlask(Flask):
    """Flask, for an app none of whose views, hooks or handlers is a coroutine.

    Flask's ``ensure_sync`` asks of every view, hook and error handler, on every
    request, whether it is a coroutine function (its documented override point
    for how async views run). None is here (:func:`create_app` checks once, at
    start), so each is called as it is.
    """

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        return func


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> Flask:
    """Build the app from ``settings`` (default: read from the environment).

    ``transport`` replaces the pika transport (unit tests pass a fake).
    """
    if settings is None:
        settings = load_settings()
    app = ServiceFlask(__name__)
    app.config.update(DEBUG=False, PROPAGATE_EXCEPTIONS=False, JSON_SORT_KEYS=False,
                      MAX_CONTENT_LENGTH=64 * 1024)
    json_provider.init_app(app)
    if settings.trusted_proxy_addresses:
        app.wsgi_app = TrustedProxies(  # type: ignore[method-assign]
            app.wsgi_app, settings.trusted_proxy_addresses)
    observer = CompositeObserver(LoggingObserver(), *(
        [metrics.PrometheusObserver()] if settings.metrics_enabled else []))
    init_services(app, build_services(settings, observer, transport))
    request_cycle.init_app(app, settings.metrics_enabled, NO_STORE)
    error_handlers.init_app(app)
    register_blueprints(app)
    limiter.init_app(app, settings)
    _check_no_coroutines(app)
    return app


def _check_no_coroutines(app: Flask) -> None:
    """:class:`ServiceFlask` calls every view, hook and handler as it is: none may be async."""
    funcs: list[Any] = list(app.view_functions.values())
    for hooks in (app.before_request_funcs, app.after_request_funcs,
                  app.teardown_request_funcs):
        funcs += [f for found in hooks.values() for f in found]
    for by_code in app.error_handler_spec.values():
        funcs += [f for handlers in by_code.values() for f in handlers.values()]
    coroutines = [getattr(f, "__name__", repr(f)) for f in funcs
                  if inspect.iscoroutinefunction(f)]
    if coroutines:
        raise RuntimeError(f"async views or hooks need Flask's ensure_sync: {coroutines}")
