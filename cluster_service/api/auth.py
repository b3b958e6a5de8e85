"""The ``X-API-Key`` gate in front of the cluster endpoints."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar, cast

from flask import current_app, g, request

from ..domain.api_key import fingerprint
from .contract import API_KEY_HEADER, LIMITED_CALL
from .extension import services

F = TypeVar("F", bound=Callable[..., Any])


def require_user(view: F) -> F:
    """Authenticate the caller, then run the view under the per-key rate limit
    (so only authenticated keys get limiter state).

    The user lands in ``g.user``.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(API_KEY_HEADER)
        if key:
            g.key_fp = fingerprint(key)
        found = services()
        g.user = found.auth.authenticate(key, request.remote_addr)
        limited = current_app.extensions.get(LIMITED_CALL)
        if limited is None:
            return view(*args, **kwargs)
        return limited(view, *args, **kwargs)

    return cast(F, wrapper)
