"""WSGI middleware: the client's address behind trusted proxies, as ``REMOTE_ADDR``.

The rule (which hops of ``X-Forwarded-For`` are believed) is the domain's:
``domain/client_address.py``. This is where the HTTP request meets it, once,
before Flask sees the request, so every later reader of ``REMOTE_ADDR`` (the
limiter, the failed-login guard, the access line) sees the same client.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Iterable

from ..domain.client_address import forwarded_client


class TrustedProxies:
    """WSGI middleware: sets ``REMOTE_ADDR`` to :func:`forwarded_client`'s answer."""

    def __init__(self, app: Callable[..., Any], networks: Iterable[str]) -> None:
        self.app = app
        self.trusted = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        peer = environ.get("REMOTE_ADDR")
        client = forwarded_client(peer, environ.get("HTTP_X_FORWARDED_FOR"), self.trusted)
        if client != peer:
            environ["cluster_service.proxy_addr"] = peer
            environ["REMOTE_ADDR"] = client
        return self.app(environ, start_response)
