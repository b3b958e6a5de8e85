"""The ``X-API-Key`` gate in front of the cluster endpoints."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar, cast

from flask import g, request

from ..domain.api_key import ApiKey
from .contract import API_KEY_HEADER
from .extension import services

F = TypeVar("F", bound=Callable[..., Any])


def request_api_key() -> ApiKey | None:
    """This request's ``X-API-Key`` as a value, hashed once and kept in ``g`` (None: not sent)."""
    if "api_key" not in g:
        raw = request.headers.get(API_KEY_HEADER)
        g.api_key = ApiKey(raw) if raw else None
    return g.api_key  # type: ignore[no-any-return]


def require_user(view: F) -> F:
    """Authenticate the caller, then count the request against the key's rate limit
    (so only authenticated keys get limiter state), then run the view.

    The user lands in ``g.user``.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request_api_key()
        if key is not None:
            g.key_fp = key.fingerprint
        found = services()
        client = request.remote_addr
        g.user = found.auth.authenticate(key, client)
        if found.key_limit is not None:
            found.key_limit.enforce(key, client)
        return view(*args, **kwargs)

    return cast(F, wrapper)
