"""Reading one variable at a time, and the validators of the variables with their own rules.

Every error is a :class:`ConfigError` whose message is one line naming the
variable, so that gunicorn and the start script can print it and stop instead
of dumping a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
from typing import Callable, Mapping, TypeVar
from urllib.parse import urlparse

from .nodes import parse_nodes
from .settings import Settings

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")
AUTH_CACHE_SECRET_MIN = 16


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _number(kind: Callable[[str], T], label: str) -> Callable[[str, str], T]:
    def parse(name: str, raw: str) -> T:
        try:
            return kind(raw.strip())
        except ValueError:
            raise ConfigError(f"{name} must be {label}, got {raw!r}") from None
    return parse


_parse_int = _number(int, "an integer")
_parse_float = _number(float, "a number")


class Reader:
    """Reads one variable at a time and names it in every error."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return None if value is None or value.strip() == "" else value

    def text(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value.strip()

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        return default if value is None else _parse_bool(name, value)

    def integer(self, name: str, default: int, low: int, high: int | None = None) -> int:
        value = self.raw(name)
        result = default if value is None else _parse_int(name, value)
        check_range(name, result, low, high)
        return result

    def number(self, name: str, default: float, low: float, high: float | None = None,
               low_inclusive: bool = True) -> float:
        value = self.raw(name)
        result = default if value is None else _parse_float(name, value)
        if result != result or result in (float("inf"), float("-inf")):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        if (result < low) if low_inclusive else (result <= low):
            bound = f">= {low:g}" if low_inclusive else f"> {low:g}"
            raise ConfigError(f"{name} must be {bound}, got {value!r}")
        if high is not None and result > high:
            raise ConfigError(f"{name} must be <= {high:g}, got {value!r}")
        return result

    def queue(self, name: str, default: str) -> str:
        value = self.text(name, default)
        if not _QUEUE_NAME.match(value):
            raise ConfigError(f"{name} must be 1-200 characters of [A-Za-z0-9._:-], got {value!r}")
        return value


def check_range(name: str, value: int, low: int, high: int | None) -> None:
    if value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{name} must be {span}, got {value}")


def user_service_url(r: Reader, name: str, default: str) -> str:
    """The fallback's base URL. Plain http:// would send API keys in clear: opt-in only."""
    value = r.text(name, default).rstrip("/")
    if value:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"{name} must be an http:// or https:// URL, got {value!r}")
        if parsed.scheme == "http" and not r.boolean("USER_SERVICE_ALLOW_HTTP",
                                                     Settings.user_service_allow_http):
            raise ConfigError(f"{name} is plain http:// (API keys would travel in clear): use "
                              "https://, or set USER_SERVICE_ALLOW_HTTP=true")
    return value


def networks(r: Reader, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """A comma list of IP addresses or CIDR networks, normalised (``127.0.0.1/32``)."""
    networks = []
    for item in r.text(name, ",".join(default)).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(f"{name} must be a comma list of IP addresses or networks, "
                              f"got {item!r}") from None
    return tuple(networks)


def existing_file(r: Reader, name: str, default: str) -> str:
    value = r.text(name, default)
    if value and not os.path.isfile(value):
        raise ConfigError(f"{name} must name an existing file, {value!r} does not exist")
    return value


def broker_hosts(r: Reader, name: str, default: str) -> str:
    """``RABBITMQ_HOST``: one host or a comma list of ``host[:port]`` (a cluster's nodes)."""
    value = r.text(name, default)
    try:
        parse_nodes(value, Settings.rabbitmq_port)
    except ValueError as error:
        raise ConfigError(f"{name} must be a host or a comma list of host[:port], "
                          f"got {str(error)!r}") from None
    return value


def storage_uri(r: Reader, name: str, default: str) -> str:
    # The URI may carry a password: an error names its scheme, never the value.
    value = r.text(name, default)
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster"):
        raise ConfigError(f"{name} must be memory:// or a redis:// URI, "
                          f"got scheme {scheme or 'none'!r}")
    return value


def auth_cache_uri(r: Reader, name: str, default: str) -> str:
    value = r.text(name, default)
    if not value:
        return ""
    parsed = urlparse(value)
    if parsed.scheme not in ("redis", "rediss") or not parsed.netloc:
        raise ConfigError(f"{name} must be empty (off) or a redis:// or rediss:// URI "
                          f"with a host, got scheme {parsed.scheme or 'none'!r}")
    return value


def auth_cache_secret(r: Reader, name: str, default: str) -> str:
    """Required with AUTH_CACHE_URI: entries are named by HMAC(secret, SHA-256(key))."""
    value = r.raw(name) or default
    if r.text("AUTH_CACHE_URI", Settings.auth_cache_uri) \
            and len(value.strip()) < AUTH_CACHE_SECRET_MIN:
        raise ConfigError(f"{name} must be set to at least {AUTH_CACHE_SECRET_MIN} "
                          "characters when AUTH_CACHE_URI is set")
    return value.strip()
