"""How every Redis client of the service connects: bounded calls, verified TLS.

Redis is shared infrastructure, and a Redis that stalls must cost a request
no more than one that is gone. redis-py's ``socket_timeout`` bounds each
``recv``, not a call: a server that answers one byte at a time keeps a call
alive for ever. So each connection's socket is wrapped in a
:class:`_DeadlineSocket`: a command (everything sent, and its reply read) must
finish within ``REDIS_TIMEOUT`` seconds of its send, or it fails with a
timeout, as an unreachable Redis does, and the connection is dropped.

One Redis often serves several clients of a worker (the rate limiter, the
brute-force guard, the auth cache). When a call to a server times out, the
server is taken as unresponsive by every connection of this process for
``UNRESPONSIVE_S``: their calls fail at once instead of each paying its own
timeout, so a stalled Redis costs a request one ``REDIS_TIMEOUT`` at most, and
each client falls back as it does when Redis is gone.

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


UNRESPONSIVE_S = 1.0
_unresponsive_until: dict[tuple[str, int], float] = {}  # (host, port) -> monotonic time


def _check_responsive(server: tuple[str, int]) -> None:
    if time.monotonic() < _unresponsive_until.get(server, 0.0):
        raise socket.timeout("redis server unresponsive a moment ago")


def _unresponsive(server: tuple[str, int]) -> None:
    _unresponsive_until[server] = time.monotonic() + UNRESPONSIVE_S


class _DeadlineSocket:
    """A socket whose reads and writes share one deadline, armed by each send."""

    def __init__(self, sock: socket.socket, budget: float, server: tuple[str, int]) -> None:
        self._sock = sock
        self._budget = budget
        self._server = server
        self._deadline = time.monotonic() + budget
        self._timeout = sock.gettimeout()

    def sendall(self, data: Any, *args: Any) -> None:
        _check_responsive(self._server)
        self._deadline = time.monotonic() + self._budget
        self._arm()
        self._timed(self._sock.sendall, data, *args)

    def recv(self, size: int, *args: Any) -> bytes:
        self._arm()
        return bytes(self._timed(self._sock.recv, size, *args))

    def recv_into(self, buffer: Any, *args: Any) -> int:
        self._arm()
        return int(self._timed(self._sock.recv_into, buffer, *args))

    def _timed(self, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except socket.timeout:
            _unresponsive(self._server)
            raise

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self._sock.settimeout(timeout)

    def gettimeout(self) -> float | None:
        return self._timeout

    def _arm(self) -> None:
        if self._timeout == 0:  # a non-blocking poll (the pool's "any stale data?"): no call
            self._sock.settimeout(0)
            return
        left = self._deadline - time.monotonic()
        if left <= 0:
            _unresponsive(self._server)
            raise socket.timeout("redis call over its deadline")
        self._sock.settimeout(left if self._timeout is None else min(left, self._timeout))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _bounded(connection: Any, connect: Any) -> _DeadlineSocket:
    """Connect (unless the server was unresponsive a moment ago) and wrap the socket."""
    server = (str(connection.host), int(connection.port))
    _check_responsive(server)
    try:
        sock = connect()
    except socket.timeout:
        _unresponsive(server)
        raise
    return _DeadlineSocket(sock, float(connection.socket_timeout or 0.5), server)


class BoundedConnection(redis.connection.Connection):
    """A plain connection whose every command is bounded (see the module docstring)."""

    def _connect(self) -> Any:
        return _bounded(self, super()._connect)


class BoundedSSLConnection(redis.connection.SSLConnection):
    """A TLS connection whose every command is bounded (see the module docstring)."""

    def _connect(self) -> Any:
        return _bounded(self, super()._connect)


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
