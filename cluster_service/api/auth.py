"""The ``X-API-Key`` gate in front of the cluster endpoints."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar, cast

from flask import current_app, g, request

from ..domain.api_key import ApiKey
from .contract import API_KEY_HEADER, LIMITED_CALL
from .extension import services

F = TypeVar("F", bound=Callable[..., Any])


def request_api_key() -> ApiKey | None:
    """This request's ``X-API-Key`` as a value, hashed once and kept in ``g`` (None: not sent)."""
    if "api_key" not in g:
        raw = request.headers.get(API_KEY_HEADER)
        g.api_key = ApiKey(raw) if raw else None
    return g.api_key  # type: ignore[no-any-return]


def require_user(view: F) -> F:
    """Authenticate the caller, then run the view under the per-key rate limit
    (so only authenticated keys get limiter state).

    The user lands in ``g.user``.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request_api_key()
        if key is not None:
            g.key_fp = key.fingerprint
        found = services()
        g.user = found.auth.authenticate(key, request.remote_addr)
        limited = current_app.extensions.get(LIMITED_CALL)
        if limited is None:
            return view(*args, **kwargs)
        return limited(view, *args, **kwargs)

    return cast(F, wrapper)
