"""The fleet-wide auth cache in Redis (optional: ``AUTH_CACHE_URI``).

A per-worker cache costs one auth RPC per key per worker per TTL: 400 workers,
400 RPCs. With this cache in Redis behind each worker's own, a key validated by
one worker is known to all of them, so a key costs about one RPC per TTL for
the whole fleet.

Redis is shared infrastructure: anyone who can write to it (another tenant)
must not be able to make a worker believe anything. So:

* Entries live under ``cluster_service:auth:key:<HMAC-SHA256(secret, SHA-256(key))>``:
  never the key, never its plain SHA-256 (which anyone holding a candidate key
  could compute and look up). A validated key's entry holds the user and the
  time the User Service was asked, for ``AUTH_CACHE_TTL``; a rejection holds
  only that, for ``AUTH_NEGATIVE_CACHE_TTL``.
* Each entry is one Redis string, ``<mac>.<payload>``: the payload is the JSON
  ``{"user": …, "asked_at": …}`` and the MAC is HMAC-SHA256 with the secret
  over the entry's name and the payload's exact bytes, so an entry can be
  neither forged, nor edited, nor moved to another key. It is checked before
  the payload is parsed. An entry that does not verify, is larger than
  ``MAX_ENTRY_BYTES`` (read with ``GETRANGE``, so a huge planted value costs
  no more than that), is dated in the future or older than its TTL, or is
  malformed, is a miss: counted (``invalid``) and logged at warning level
  without its content, never an error.
* Each user's entry names are kept in a set named by HMAC(secret, user id),
  so that a ``user_revoked`` event can delete exactly them and nobody without
  the secret can tell which set belongs to which user.
* Every call is bounded (``REDIS_TIMEOUT``, ``redis_options.py``) and not retried.
  When Redis fails, the worker logs it once, goes on with its own cache and the
  RPC, and tries Redis again every 2 s until it answers (logged once more). A
  failure is a miss, never an error for the caller.
* Purges (``drop_user``, ``flush``) run on a thread of their own, because they
  are triggered from the broker's I/O thread, which must never wait on Redis.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import redis

from ..config import Settings
from ..observability.observer import Observer
from ..rpc.bodies import loads_strict
from .redis_options import client_options

log = logging.getLogger(__name__)

T = TypeVar("T")
PREFIX = "cluster_service:auth:"
RETRY_EVERY_S = 2.0
MAX_ENTRY_BYTES = 8192
CLOCK_SKEW_S = 5.0  # how far in the future another worker's clock may date an entry
_FLUSH_BATCH = 500
_MAC_HEX = 64


@dataclass(frozen=True)
class Verdict:
    """One cached answer of the User Service; ``user_data`` is None for a rejection."""

    user_data: dict[str, Any] | None
    asked_at: float  # wall-clock time (time.time()) the User Service was asked


class SharedAuthCache:
    """Get, put and purge auth verdicts in Redis; see the module docstring."""

    def __init__(self, settings: Settings, observer: Observer | None = None,
                 client: redis.Redis | None = None) -> None:
        self._secret = settings.auth_cache_secret.encode()
        self._ttl = settings.auth_cache_ttl
        self._negative_ttl = settings.auth_negative_cache_ttl
        self._observer = observer or Observer()
        self._client = client or redis.Redis.from_url(
            settings.auth_cache_uri, **client_options(settings, settings.auth_cache_uri))
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._purger: ThreadPoolExecutor | None = None  # created on first use, after fork

    def entry_name(self, key_digest: str) -> str:
        """The Redis key of the entry of the API key whose SHA-256 is ``key_digest``
        (``ApiKey.digest``: the key itself never reaches this layer). Computed once per
        request by the caller, and passed to :meth:`get` and the puts."""
        return f"{PREFIX}key:{self._digest(key_digest.encode())}"

    def members_name(self, user_id: int) -> str:
        """The Redis set of ``user_id``'s entry names (unguessable without the secret)."""
        return f"{PREFIX}user:{self._digest(f'user:{user_id}'.encode())}"

    def _digest(self, data: bytes) -> str:
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()

    def seal(self, name: str, user_data: dict[str, Any] | None, asked_at: float) -> str:
        """The stored form of an entry: ``<mac>.<payload>`` (see the module docstring)."""
        payload = json.dumps({"user": user_data, "asked_at": asked_at},
                             separators=(",", ":"), sort_keys=True)
        return f"{self._mac(name, payload.encode())}.{payload}"

    def _mac(self, name: str, payload: bytes) -> str:
        return hmac.new(self._secret, b"entry\0" + name.encode() + b"\0" + payload,
                        hashlib.sha256).hexdigest()

    # -- request threads -----------------------------------------------------------

    def get(self, name: str) -> Verdict | None:
        """The cached verdict in entry ``name``, or None (miss, bad entry, Redis unavailable)."""
        raw = self._run(lambda client: client.getrange(name, 0, MAX_ENTRY_BYTES))
        if raw is _UNAVAILABLE:
            return None
        if not raw:  # GETRANGE of a missing key is empty
            self._observer.auth_cache("miss")
            return None
        verdict, problem = (None, "wrong_type") if raw is _REFUSED else self._open(name, raw)
        if verdict is None:
            self._observer.auth_cache("invalid")
            log.warning("shared auth cache entry not believed", extra={
                "event": "auth_cache_invalid", "reason": problem})
            return None
        self._observer.auth_cache("hit")
        return verdict

    def _open(self, name: str, raw: Any) -> tuple[Verdict | None, str]:
        """The verdict in a stored entry, or None and why not (never raises)."""
        if not isinstance(raw, bytes) or len(raw) > MAX_ENTRY_BYTES:
            return None, "oversized"
        mac, dot, payload = raw.partition(b".")
        if not dot or len(mac) != _MAC_HEX or not hmac.compare_digest(
                mac, self._mac(name, payload).encode()):
            return None, "bad_mac"
        verdict = _decode(payload)
        if verdict is None:
            return None, "malformed"
        now = time.time()
        if verdict.asked_at > now + CLOCK_SKEW_S:
            return None, "future_dated"
        ttl = self._ttl if verdict.user_data is not None else self._negative_ttl
        if verdict.asked_at + ttl < now:
            return None, "expired"
        return verdict, ""

    def put_valid(self, name: str, user_data: dict[str, Any], user_id: int,
                  asked_at: float) -> None:
        """Remember a validation in entry ``name`` for ``AUTH_CACHE_TTL`` seconds from
        ``asked_at``."""
        ttl_ms = int((asked_at + self._ttl - time.time()) * 1000)
        if ttl_ms <= 0:
            return
        members = self.members_name(user_id)
        value = self.seal(name, user_data, asked_at)

        def put(client: redis.Redis) -> None:
            pipe = client.pipeline(transaction=False)
            pipe.set(name, value, px=ttl_ms)
            pipe.sadd(members, name)
            pipe.pexpire(members, int(self._ttl * 1000) + 1000)
            pipe.execute(raise_on_error=False)  # a set replaced by another type: entry only
        self._run(put)

    def put_rejected(self, name: str, asked_at: float) -> None:
        """Remember a rejection in entry ``name`` for ``AUTH_NEGATIVE_CACHE_TTL`` seconds."""
        if self._negative_ttl > 0:
            value = self.seal(name, None, asked_at)
            self._run(lambda client: client.set(name, value,
                                                px=int(self._negative_ttl * 1000)))

    # -- purges (any thread; the work runs on the purge thread) --------------------

    def drop_user_later(self, user_id: int) -> None:
        """Delete every entry of ``user_id``, soon, without blocking the caller."""
        self._later(lambda: self.drop_user(user_id))

    def flush_later(self) -> None:
        """Delete every entry, soon, without blocking the caller."""
        self._later(self.flush)

    def drop_user(self, user_id: int) -> None:
        members = self.members_name(user_id)

        def drop(client: redis.Redis) -> None:
            try:
                names = list(client.smembers(members))
            except redis.ResponseError:  # not a set (any more): nothing listed to drop
                names = []
            client.delete(members, *names)
        self._run(drop)

    def flush(self) -> None:
        def flush(client: redis.Redis) -> None:
            batch: list[Any] = []
            for name in client.scan_iter(match=f"{PREFIX}*", count=_FLUSH_BATCH):
                batch.append(name)
                if len(batch) >= _FLUSH_BATCH:
                    client.delete(*batch)
                    batch.clear()
            if batch:
                client.delete(*batch)
        self._run(flush)

    def close(self) -> None:
        """Stop the purge thread (after its queued work) and close the connections."""
        with self._lock:
            purger, self._purger = self._purger, None
        if purger is not None:
            purger.shutdown(wait=True, cancel_futures=False)
        self._client.close()

    def _later(self, work: Callable[[], None]) -> None:
        with self._lock:
            if self._purger is None:
                self._purger = ThreadPoolExecutor(1, thread_name_prefix="auth-cache-purge")
            purger = self._purger
        purger.submit(work)

    # -- availability --------------------------------------------------------------

    def _run(self, action: Callable[[redis.Redis], T]) -> T | object:
        """``action(client)``, or _UNAVAILABLE while Redis is failing (logged once), or
        _REFUSED when Redis answered with an error (e.g. WRONGTYPE: someone replaced one
        of our names by another type); that is about the data, not Redis being there."""
        if time.monotonic() < self._down_until:
            return _UNAVAILABLE
        try:
            result = action(self._client)
        except redis.ResponseError:
            return _REFUSED
        except (redis.RedisError, OSError) as error:
            with self._lock:
                first = self._down_until == 0.0
                self._down_until = time.monotonic() + RETRY_EVERY_S
            self._observer.auth_cache("error")
            if first:
                log.warning("shared auth cache unreachable, using this worker's cache and RPCs",
                            extra={"event": "auth_cache_unavailable",
                                   "error_type": type(error).__name__})
            return _UNAVAILABLE
        if self._down_until:
            with self._lock:
                recovered, self._down_until = self._down_until != 0.0, 0.0
            if recovered:
                log.info("shared auth cache reachable again",
                         extra={"event": "auth_cache_recovered"})
        return result


_UNAVAILABLE = object()
_REFUSED = object()


def _decode(raw: bytes) -> Verdict | None:
    """An entry's payload as written by :meth:`SharedAuthCache.seal`, or None (never raises)."""
    try:
        data = loads_strict(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(data, dict) or set(data) != {"user", "asked_at"}:
        return None
    user, asked_at = data["user"], data["asked_at"]
    if not isinstance(asked_at, float) or not math.isfinite(asked_at) or asked_at <= 0 \
            or not (user is None or isinstance(user, dict)):
        return None
    return Verdict(user_data=user, asked_at=asked_at)
