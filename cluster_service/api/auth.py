"""The ``X-API-Key`` gate in front of the cluster endpoints."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar, cast

from flask import g, request

from ..security import fingerprint
from ..services import services

API_KEY_HEADER = "X-API-Key"

F = TypeVar("F", bound=Callable[..., Any])


def require_user(view: F) -> F:
    """Authenticate the caller, then run the view.

    The user lands in ``g.user``.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(API_KEY_HEADER)
        if key:
            g.key_fp = fingerprint(key)
        g.user = services().auth.authenticate(key, request.remote_addr)
        return view(*args, **kwargs)

    return cast(F, wrapper)
