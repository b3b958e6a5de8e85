"""The API key as a value: the secret and the two names it may go by, hashed once.

A request's key is built once (``api/auth.py: request_api_key``) and passed
down: the limiter keys on its digest, the audit and access logs name its
fingerprint, the caches key on its digest, and only the RPC to the User
Service (and its HTTP fallback) ever sees the raw key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

MAX_API_KEY_LENGTH = 256


@dataclass(frozen=True, repr=False)
class ApiKey:
    """One API key. Its ``repr`` names the fingerprint only, never the secret or the digest."""

    raw: str = field(repr=False)
    # The full SHA-256, used where collisions would matter (caches, limiter keys).
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "digest", cache_key(self.raw))

    def __repr__(self) -> str:
        return f"ApiKey(fingerprint={self.fingerprint!r})"

    @property
    def fingerprint(self) -> str:
        """A short, stable, non-reversible name for logs: 12 hex digits of the digest."""
        return self.digest[:12]

    @property
    def well_formed(self) -> bool:
        """Whether the key is worth asking the User Service about."""
        return is_well_formed_api_key(self.raw)


def cache_key(secret: str) -> str:
    """The full SHA-256 of an API key, used where collisions would matter (caches)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def is_well_formed_api_key(key: str | None) -> bool:
    """Whether a key is worth asking the User Service about (non-empty, short, printable ASCII)."""
    if not key or len(key) > MAX_API_KEY_LENGTH:
        return False
    return all(33 <= ord(ch) < 127 for ch in key)
