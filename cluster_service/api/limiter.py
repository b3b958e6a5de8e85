"""Rate limiting: per API key on the cluster endpoints, and per client on failed logins.

* The per-key limit is Flask-Limiter on the cluster endpoints, keyed by the
  key's SHA-256 (never the key), and checked only *after* the key has been
  authenticated (``require_user`` calls the view through the decorated
  :func:`_call`): a limiter entry per key string tried would let a guesser grow
  every worker's memory with keys that were never valid. Unauthenticated traffic
  is bounded by the per-client guard instead. Strategy: the sliding window
  counter. A key's first L requests in a minute succeed and the next gets 429,
  and unlike a fixed window it does not allow a double burst at a window edge.
  The moving window would be exact too, but its in-memory storage keeps one
  timestamp per request and copies those lists every 10 ms: measured at 18% of a
  worker's CPU under load (docs/performance.md). Probes and metrics carry no
  limit.
* Storage comes from ``RATE_LIMIT_STORAGE_URI``. ``memory://`` is per process,
  so N gunicorn workers allow up to N x the limit; ``redis://`` shares one
  limit across every worker and replica. If Redis goes away, Flask-Limiter
  falls back to in-memory limits (logging once) and returns to Redis when it
  answers again; requests keep being served either way.
* Failed logins per client address are counted by ``auth_guard.AuthFailureGuard``
  in the same storage.
"""

from __future__ import annotations

from typing import Any, Callable

from flask import Blueprint, Flask, Response, g, request
from flask_limiter import Limiter

from ..config import Settings
from ..domain.auth_guard import storage_options
from .auth import request_api_key
from .contract import LIMITED_CALL

EXTENSION = "cluster_limiter"
STRATEGY = "sliding-window-counter"
SCOPE = "cluster"
_APP_RETRY_AFTER = "_cluster_retry_after"


def _call(view: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The trampoline the per-key limit decorates: the limit is checked when it is called."""
    return view(*args, **kwargs)


def api_key_identity() -> str:
    """The limiter's key: the API key's SHA-256, or the client address when no key is sent."""
    key = request_api_key()
    return f"key:{key.digest}" if key is not None else f"addr:{request.remote_addr}"


def init_app(app: Flask, settings: Settings, limited: list[Blueprint]) -> Limiter:
    """Attach Flask-Limiter and put the per-key limit on the ``limited`` blueprints."""

    # Flask-Limiter's after_request hook sets Retry-After (its window's reset) on
    # every response of a limited endpoint. That only means something on its own
    # 429. A Retry-After the app set itself (503: 5 s; the brute-force guard's
    # 429) must survive it, and other responses must not carry one. Flask runs
    # after_request hooks in reverse order of registration: this one, registered
    # before Flask-Limiter's, runs after it; ``_remember_retry_after``, registered
    # after, runs before it.
    @app.after_request
    def _retry_after_only_when_refused(response: Response) -> Response:
        own = g.pop(_APP_RETRY_AFTER, None)
        if own is not None:
            response.headers["Retry-After"] = own
        elif response.status_code != 429:
            response.headers.pop("Retry-After", None)
        return response

    limiter = Limiter(
        api_key_identity,
        app=app,
        storage_uri=settings.rate_limit_storage_uri,
        storage_options=storage_options(settings.rate_limit_storage_uri),  # type: ignore[arg-type]
        strategy=STRATEGY,
        headers_enabled=True,
        retry_after="delta-seconds",
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        key_prefix="cluster_service",
        enabled=settings.rate_limit_enabled,
    )
    # One budget per key across every limited endpoint: a plain ``limit`` on a
    # blueprint would give each blueprint (endpoint) its own L per minute. It
    # decorates a trampoline rather than the blueprints, so that it is checked
    # when ``require_user`` calls the view, after authentication, not in
    # Flask-Limiter's before_request hook.
    shared = limiter.shared_limit(f"{settings.rate_limit_requests_per_minute}/minute",
                                  scope=SCOPE)
    decorated = shared(_call)

    def limited_call(view: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        g.cluster_limit_due = True  # from here on the per-key limit applies (filter below)
        return decorated(view, *args, **kwargs)

    app.extensions[LIMITED_CALL] = limited_call
    # Everything else is exempt up front: probes, metrics and the OpenAPI document
    # (without this filter Flask-Limiter resolves its limits on every request,
    # measured at about a fifth of a /health request's CPU), and a cluster request
    # until ``limited_call`` runs: Flask-Limiter's own before_request pass has
    # nothing to check for it but cost ~5% of a /namespaces request resolving that.
    limited_names = frozenset(blueprint.name for blueprint in limited)
    limiter.request_filter(lambda: request.blueprint not in limited_names
                           or not g.get("cluster_limit_due", False))

    @app.after_request
    def _remember_retry_after(response: Response) -> Response:
        if "Retry-After" in response.headers:
            setattr(g, _APP_RETRY_AFTER, response.headers["Retry-After"])
        return response

    app.extensions[EXTENSION] = limiter
    return limiter
