"""Helpers that keep secrets out of logs, caches and limiter keys."""

from __future__ import annotations

import hashlib

MAX_API_KEY_LENGTH = 256


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible name for an API key: the first 12 hex digits of SHA-256."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()[:12]


def cache_key(secret: str) -> str:
    """The full SHA-256 of an API key, used where collisions would matter (caches)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def is_well_formed_api_key(key: str | None) -> bool:
    """Whether a key is worth asking the User Service about (non-empty, short, printable ASCII)."""
    if not key or len(key) > MAX_API_KEY_LENGTH:
        return False
    return all(33 <= ord(ch) < 127 for ch in key)
