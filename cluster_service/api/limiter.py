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
  limit, and run none of Flask-Limiter's hooks.
* Storage comes from ``RATE_LIMIT_STORAGE_URI``. ``memory://`` is per process,
  so N gunicorn workers allow up to N x the limit; ``redis://`` shares one
  limit across every worker and replica. If Redis goes away, Flask-Limiter
  falls back to in-memory limits (logging once) and returns to Redis when it
  answers again; requests keep being served either way.
* Failed logins per client address are counted by ``auth_guard.AuthFailureGuard``
  in the same storage.
"""

from __future__ import annotations

import functools
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
    """Attach Flask-Limiter and put the per-key limit on the ``limited`` blueprints.

    Call after the blueprints are registered: Flask-Limiter's request hooks are
    moved onto them (see :func:`_hooks_on_limited_blueprints`).
    """
    limiter = Limiter(
        api_key_identity,
        app=app,
        storage_uri=settings.rate_limit_storage_uri,
        storage_options=storage_options(settings),
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
    # when ``require_user`` calls the view, after authentication.
    shared = limiter.shared_limit(f"{settings.rate_limit_requests_per_minute}/minute",
                                  scope=SCOPE)
    # The decorated trampoline is the only place the limit is checked: Flask-Limiter's
    # own before_request check is removed below.
    app.extensions[LIMITED_CALL] = shared(_call)
    _hooks_on_limited_blueprints(app, limiter, [blueprint.name for blueprint in limited])
    app.extensions[EXTENSION] = limiter
    return limiter


def _hooks_on_limited_blueprints(app: Flask, limiter: Limiter, names: list[str]) -> None:
    """Run Flask-Limiter's request hooks for the limited blueprints only, and drop its check.

    Flask-Limiter registers three app-wide hooks: a before_request check, an
    after_request that adds the X-RateLimit-* and Retry-After headers, and a
    teardown that resets its per-request state. The check has nothing to do here
    (the limit is checked by the decorated trampoline, after authentication), and
    on probes, metrics and the OpenAPI document the other two have nothing to do
    either; all three together cost about a third of a /health request's time in
    the app (docs/performance.md). So the check is dropped, and the other two run
    as blueprint hooks of the limited blueprints, with ours around them.
    """
    def owned(hook: Any) -> bool:
        bound = getattr(hook, "__self__", None)
        if bound is None and isinstance(hook, functools.partial):
            bound = hook.args[0] if hook.args else None
        return bound is limiter

    def take(hooks: dict[Any, list[Any]]) -> list[Any]:
        mine = [hook for hook in hooks.get(None, []) if owned(hook)]
        hooks[None] = [hook for hook in hooks.get(None, []) if not owned(hook)]
        return mine

    take(app.before_request_funcs)  # dropped: the check runs in the trampoline
    inject_headers, release_context = take(app.after_request_funcs), \
        take(app.teardown_request_funcs)
    if len(inject_headers) > 1 or len(release_context) > 1:  # none at all when disabled
        raise RuntimeError("Flask-Limiter's request hooks are not the ones this module moves")

    # Flask runs after_request hooks in reverse order of registration. Flask-Limiter's
    # sets Retry-After (its window's reset) on every response of a limited endpoint;
    # that only means something on its own 429. A Retry-After the app set itself
    # (503: 5 s; the brute-force guard's 429) must survive it, and other responses
    # must not carry one: ``_remember_retry_after`` runs before it, and
    # ``_retry_after_only_when_refused`` after it.
    for name in names:
        app.after_request_funcs.setdefault(name, []).extend(
            [_retry_after_only_when_refused, *inject_headers, _remember_retry_after])
        app.teardown_request_funcs.setdefault(name, []).extend(release_context)


def _retry_after_only_when_refused(response: Response) -> Response:
    own = g.pop(_APP_RETRY_AFTER, None)
    if own is not None:
        response.headers["Retry-After"] = own
    elif response.status_code != 429:
        response.headers.pop("Retry-After", None)
    return response


def _remember_retry_after(response: Response) -> Response:
    if "Retry-After" in response.headers:
        setattr(g, _APP_RETRY_AFTER, response.headers["Retry-After"])
    return response
