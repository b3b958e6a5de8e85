"""API key → user, via the User Service over RabbitMQ, with an HTTP fallback.

Order of checks for one key:

0. A client address with too many recent failures gets 429 unless its key is
   already in the cache (brute-force defence, ``auth_guard.py``).
1. Malformed keys (empty, over 256 characters, control or non-ASCII characters)
   are rejected without asking anyone.
2. A key validated less than ``AUTH_CACHE_TTL`` seconds ago is accepted from
   this worker's cache; a key rejected less than ``AUTH_NEGATIVE_CACHE_TTL``
   seconds ago is rejected from the negative cache, so a hammered bad key costs
   one RPC, not one per request. Both caches are keyed by the key's SHA-256,
   never by the key itself.
3. Otherwise, with ``AUTH_CACHE_URI`` set, the fleet-wide cache in Redis
   (``shared_auth_cache.py``): a verdict any worker of any replica got is used
   here too, so a key costs about one RPC per TTL for the whole fleet.
4. Otherwise one RPC on the auth queue; concurrent requests with the same key
   share it (single flight), and so share the Redis look-up too.
5. If the broker path gives no verdict (broker down, timeout, backend error),
   and ``USER_SERVICE_URL`` is set, the User Service is asked over HTTP. A
   ``valid: false`` from the broker is a verdict and never falls back.

Revocation: an auth event (``auth_events.py``) calls :meth:`Authenticator.revoke_user`
or :meth:`Authenticator.flush`, which drop the cached validations here and in
Redis; ``revocations.py`` makes sure no validation asked before the event is
cached or used again, wherever it was in flight.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from contextlib import contextmanager
from typing import Iterator

from ..concurrency.singleflight import SingleFlight
from ..concurrency.ttlcache import TtlCache
from ..config import Settings
from ..errors import (AuthBackendUnavailable, AuthenticationFailed, BrokerUnavailable,
                      NoConsumer, RemoteError, RpcTimeout, TooManyAuthFailures)
from ..observability.observer import Observer
from ..rpc.client import RpcClient
from .api_key import ApiKey
from .audit import audit_auth
from .auth_guard import AuthFailureGuard
from .revocations import Revocations
from .shared_auth_cache import SharedAuthCache
from .users import User, UserServiceClient

log = logging.getLogger(__name__)


class Authenticator:
    """Turns an API key into a :class:`User` or raises; see the module docstring."""

    def __init__(self, settings: Settings, rpc: RpcClient,
                 fallback: UserServiceClient | None = None,
                 observer: Observer | None = None,
                 guard: AuthFailureGuard | None = None,
                 shared: SharedAuthCache | None = None) -> None:
        self._settings = settings
        self._shared = shared
        self._revocations = Revocations(settings.auth_cache_ttl)
        self._rpc = rpc
        self._fallback = fallback
        self._observer = observer or Observer()
        self._valid: TtlCache[User] = TtlCache(settings.auth_cache_ttl)
        self._rejected: TtlCache[bool] = TtlCache(settings.auth_negative_cache_ttl)
        self._flights: SingleFlight[User] = SingleFlight()
        self._guard = guard
        self._guessing_lock = threading.Lock()
        self._in_progress: dict[tuple[str | None, str], int] = {}
        # Followers wait as long as the leader may. (The per-worker slot is taken
        # before authentication, outside the flight.)
        self._flight_timeout = settings.auth_flight_timeout

    def authenticate(self, api_key: ApiKey | str | None, client: str | None = None) -> User:
        """The user behind ``api_key`` (hashed once: pass the request's :class:`ApiKey`).

        Raises AuthenticationFailed, TooManyAuthFailures (for ``client``, the
        caller's address) or AuthBackendUnavailable.
        """
        if isinstance(api_key, str):
            api_key = ApiKey(api_key) if api_key else None
        key = api_key.digest if api_key is not None and api_key.well_formed else None
        if key is not None:
            user = self._valid.get(key)
            if user is not None:
                self._observer.auth_outcome("cached")
                return user
        if self._guard is None:
            return self._authenticate(api_key, key, client)
        if not api_key:
            # A request with no key at all is a misconfigured client, not a guess:
            # counting it would turn its 401s into 429s and, behind a proxy that is
            # not in TRUSTED_PROXY_ADDRESSES, lock out everyone sharing its address.
            retry_after = self._guard.retry_after(client)
            if retry_after is not None:
                audit_auth("blocked", "-", None, client)
                raise TooManyAuthFailures(retry_after)
            return self._authenticate(api_key, key, client)
        with self._guessing(client, key) as first:
            if not first:
                return self._follow(api_key, key, client)
            return self._guess(api_key, key, client)

    @contextmanager
    def _guessing(self, client: str | None, key: str | None) -> Iterator[bool]:
        """Whether this request is the first in progress with ``key`` from ``client``.

        Claimed under one lock, so of a burst with one key exactly one request counts
        as the guess (a check of "is a lookup already running" raced with the leader
        starting it). A malformed key (``None``) is always a guess of its own.
        """
        if key is None:
            yield True
            return
        with self._guessing_lock:
            ahead = self._in_progress.get((client, key), 0)
            self._in_progress[(client, key)] = ahead + 1
        try:
            yield ahead == 0
        finally:
            with self._guessing_lock:
                left = self._in_progress.pop((client, key)) - 1
                if left:
                    self._in_progress[(client, key)] = left

    def _guess(self, api_key: ApiKey, key: str | None, client: str | None) -> User:
        """Count a guess before the RPC, and forgive it unless it fails."""
        assert self._guard is not None  # nosec B101 - only called with a guard
        # Counted before the RPC, forgiven unless it fails: concurrent guesses cannot
        # all slip past the check while the first rejections are still in flight.
        retry_after = self._guard.admit(client)
        if retry_after is not None:
            audit_auth("blocked", api_key.fingerprint, None, client)
            raise TooManyAuthFailures(retry_after)
        failed = False
        try:
            return self._authenticate(api_key, key, client)
        except AuthenticationFailed:
            failed = True
            raise
        finally:
            if not failed:
                self._guard.forgive(client)

    def _follow(self, api_key: ApiKey, key: str | None, client: str | None) -> User:
        """Share the verdict of the same key's request in progress: not another guess.

        A burst of requests with one key (a client's first calls, before the cache
        holds it) is one guess; counting each would give a valid key 429s. A shared
        rejection still counts, as a rejected key's repeats do.
        """
        assert self._guard is not None  # nosec B101 - only called with a guard
        retry_after = self._guard.retry_after(client)
        if retry_after is not None:
            audit_auth("blocked", api_key.fingerprint, None, client)
            raise TooManyAuthFailures(retry_after)
        try:
            return self._authenticate(api_key, key, client)
        except AuthenticationFailed:
            self._guard.record_failure(client)
            raise

    def _authenticate(self, api_key: ApiKey | None, key: str | None,
                      client: str | None) -> User:
        """``key`` is the cache key of a well-formed ``api_key``, None for any other."""
        if api_key is None or key is None:
            self._observer.auth_outcome("rejected")
            audit_auth("malformed", "-", None, client)
            raise AuthenticationFailed()
        if self._rejected.get(key):
            self._observer.auth_outcome("rejected")
            audit_auth("rejected_cached", api_key.fingerprint, None, client)
            raise AuthenticationFailed()
        try:
            user, shared = self._flights.do(key, lambda: self._validate(api_key, key, client),
                                            self._flight_timeout)
        except RpcTimeout:  # only a follower's own wait: the leader's is handled in _validate
            raise AuthBackendUnavailable() from None
        if shared:  # answered by another request's lookup: no RPC of its own, like a cache hit
            self._observer.auth_outcome("cached")
            audit_auth("success", api_key.fingerprint, user, client)
        return user

    def revoke_user(self, user_id: int) -> None:
        """Forget every cached validation of ``user_id``, here and in the shared cache."""
        self._revocations.revoke(user_id)  # first: a validation in flight is not cached
        self._valid.discard_if(lambda user: user.id == user_id)
        if self._shared is not None:
            self._shared.drop_user_later(user_id)

    def flush(self) -> None:
        """Forget every cached verdict, here and in the shared cache."""
        self._revocations.flush()
        self._valid.clear()
        self._rejected.clear()
        if self._shared is not None:
            self._shared.flush_later()

    def forget_local(self) -> None:
        """Forget this worker's own cached verdicts (auth events may have been missed)."""
        self._valid.clear()
        self._rejected.clear()

    def _validate(self, api_key: ApiKey, key: str, client: str | None) -> User:
        key_fp = api_key.fingerprint
        asked_at = time.time()
        entry = self._shared.entry_name(api_key.digest) if self._shared is not None else ""
        if self._shared is not None:
            cached = self._from_shared(self._shared, entry, key, key_fp, client)
            if cached is not None:
                return cached
        try:
            user = self._ask_broker(api_key.raw)
            outcome = "valid"
        except (BrokerUnavailable, RpcTimeout, RemoteError) as error:
            if self._fallback is None:
                self._observer.auth_outcome("error")
                audit_auth("backend_error", key_fp, None, client)
                message = error.message if isinstance(error, NoConsumer) else None
                raise AuthBackendUnavailable(message) from None
            log.info("auth over broker gave no verdict, trying HTTP fallback",
                     extra={"event": "auth_fallback", "reason": type(error).__name__})
            try:
                user = self._fallback.validate(api_key.raw)
            except AuthenticationFailed:
                self._reject(key, key_fp, client)
                raise
            except AuthBackendUnavailable:
                self._observer.auth_outcome("error")
                audit_auth("backend_error", key_fp, None, client)
                raise
            outcome = "fallback"
        except AuthenticationFailed:
            self._reject(key, key_fp, client)
            if self._shared is not None:
                self._shared.put_rejected(entry, asked_at)
            raise
        if not self._revocations.void(user.id, asked_at):
            self._valid.put(key, user)
            if self._shared is not None:
                self._shared.put_valid(entry, dataclasses.asdict(user), user.id, asked_at)
        self._observer.auth_outcome(outcome)
        audit_auth("success", key_fp, user, client)
        return user

    def _from_shared(self, shared: SharedAuthCache, entry: str, key: str, key_fp: str,
                     client: str | None) -> User | None:
        """A verdict from the fleet-wide cache, kept here for the rest of its TTL; None = ask."""
        verdict = shared.get(entry)
        if verdict is None:
            return None
        age = time.time() - verdict.asked_at
        if verdict.user_data is None:
            self._rejected.put(key, True, ttl=self._settings.auth_negative_cache_ttl - age)
            self._observer.auth_outcome("rejected")
            audit_auth("rejected_cached", key_fp, None, client)
            raise AuthenticationFailed()
        try:
            user = User.from_reply(verdict.user_data)
        except RemoteError:
            return None
        if not user.is_active or self._revocations.void(user.id, verdict.asked_at):
            return None
        self._valid.put(key, user, ttl=self._settings.auth_cache_ttl - age)
        self._observer.auth_outcome("cached")
        audit_auth("success", key_fp, user, client)
        return user

    def _reject(self, key: str, key_fp: str, client: str | None) -> None:
        self._rejected.put(key, True)
        self._observer.auth_outcome("rejected")
        audit_auth("rejected", key_fp, None, client)

    def _ask_broker(self, api_key: str) -> User:
        reply = self._rpc.call(self._settings.auth_request_queue,
                               {"api_key": api_key, "service": "cluster_service"},
                               self._settings.auth_timeout)
        valid = reply.get("valid")
        if valid is True:
            user = User.from_reply(reply.get("user_data"))
            if not user.is_active:
                raise AuthenticationFailed()
            return user
        if valid is False:
            raise AuthenticationFailed()
        # No "valid" at all: the User Service had an internal error. Not a verdict.
        raise RemoteError("auth backend error")
