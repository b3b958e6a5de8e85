"""How every Redis client of the service connects: bounded calls, verified TLS.

Redis is shared infrastructure, and a Redis that stalls must cost a request
no more than one that is gone. redis-py's ``socket_timeout`` bounds each
``recv``, not a call: a server that answers one byte at a time keeps a call
alive for ever. So each connection's socket is wrapped in a
:class:`_DeadlineSocket`: a command (everything sent, and its reply read) must
finish within ``REDIS_TIMEOUT`` seconds of its send, or it fails with a
timeout, as an unreachable Redis does, and the connection is dropped.

``rediss://`` verifies the server's certificate (``REDIS_CA_FILE``, empty: the
system's CAs) and its host name; nothing can switch that off here.

Used by the shared auth cache (``shared_auth_cache.py``) and by the rate
limiter's storage (Flask-Limiter and ``auth_guard.py``, through ``limits``).
"""

from __future__ import annotations

import socket
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..config import Settings


class _DeadlineSocket:
    """A socket whose reads and writes share one deadline, armed by each send."""

    def __init__(self, sock: socket.socket, budget: float) -> None:
        self._sock = sock
        self._budget = budget
        self._deadline = time.monotonic() + budget
        self._timeout = sock.gettimeout()

    def sendall(self, data: Any, *args: Any) -> None:
        self._deadline = time.monotonic() + self._budget
        self._arm()
        self._sock.sendall(data, *args)

    def recv(self, size: int, *args: Any) -> bytes:
        self._arm()
        return self._sock.recv(size, *args)

    def recv_into(self, buffer: Any, *args: Any) -> int:
        self._arm()
        return self._sock.recv_into(buffer, *args)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._timeout

    def _arm(self) -> None:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("redis call over its deadline")
        self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class BoundedConnection(redis.connection.Connection):
    """A plain connection whose every command is bounded (see the module docstring)."""

    def _connect(self) -> Any:
        sock = super()._connect()  # type: ignore[no-untyped-call]
        return _DeadlineSocket(sock, float(self.socket_timeout or 0.5))


class BoundedSSLConnection(redis.connection.SSLConnection):
    """A TLS connection whose every command is bounded (see the module docstring)."""

    def _connect(self) -> Any:
        sock = super()._connect()  # type: ignore[no-untyped-call]
        return _DeadlineSocket(sock, float(self.socket_timeout or 0.5))


def redis_options(settings: Settings, uri: str) -> dict[str, Any]:
    """Keyword arguments for ``redis.Redis.from_url(uri, ...)`` (and ``limits``' storage).

    Empty for a URI that is not ``redis://`` or ``rediss://`` (``memory://``; the
    sentinel and cluster schemes keep redis-py's own connection classes, with
    the timeouts only).
    """
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if not scheme.startswith("redis"):
        return {}
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
    }
    if scheme == "redis":
        options["connection_class"] = BoundedConnection
    elif scheme == "rediss":
        options["connection_class"] = BoundedSSLConnection
    if scheme == "rediss":
        options.update(ssl_cert_reqs="required", ssl_check_hostname=True)
        if settings.redis_ca_file:
            options["ssl_ca_certs"] = settings.redis_ca_file
    return options


def client_options(settings: Settings, uri: str) -> dict[str, Any]:
    """:func:`redis_options` plus no retries and no health checks: one attempt, bounded."""
    return {**redis_options(settings, uri), "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False, "health_check_interval": 0}
