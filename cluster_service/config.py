"""Typed settings, read once from the environment and validated at start-up.

Every variable of the original README's table is here with its default, plus
the contract's additions (§3). A bad value raises :class:`ConfigError` whose
message is one line naming the variable, so that gunicorn and the start script
can print it and stop instead of dumping a traceback.

`.env` files are *not* read here: only the process edges (``wsgi.py``,
``gunicorn.conf.py``) call ``load_dotenv``, so tests never see a developer's
``.env``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from typing import Any, Callable, Mapping, TypeVar
from urllib.parse import urlparse

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")


# What a request that joins one in flight waits beyond the leader's own budget.
FLIGHT_MARGIN = 1.0


class ConfigError(ValueError):
    """A setting has a value the service cannot run with."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """All settings of one process. Frozen: read once, handed down, never mutated."""

    # Bind address inside the pod, not a target.
    host: str = "0.0.0.0"  # nosec B104
    port: int = 8008
    debug: bool = True
    log_level: str = "DEBUG"
    log_file: str = ""

    user_service_url: str = ""
    user_service_verify_ssl: bool = True
    user_service_ca_bundle: str = ""
    user_service_timeout: float = 5.0
    user_service_allow_http: bool = False

    rabbitmq_host: str = "localhost"
    rabbitmq_port: int = 5672
    rabbitmq_user: str = "guest"
    rabbitmq_password: str = "guest"  # RabbitMQ's documented local default
    rabbitmq_vhost: str = "/"
    rabbitmq_heartbeat: int = 30
    broker_connect_wait: float = 5.0

    websocket_timeout: float = 30.0
    auth_timeout: float = 10.0
    auth_cache_ttl: float = 30.0
    auth_negative_cache_ttl: float = 10.0
    auth_failures_per_minute: int = 10
    auth_cache_uri: str = ""
    auth_cache_secret: str = dataclasses.field(default="", repr=False)

    rate_limit_enabled: bool = True
    rate_limit_requests_per_minute: int = 60
    rate_limit_storage_uri: str = "memory://"
    trusted_proxy_addresses: tuple[str, ...] = ()

    use_ssl: bool = False
    ssl_keyfile: str = "key.pem"
    ssl_certfile: str = "cert.pem"

    header_read_timeout: float = 10.0

    web_concurrency: int = 2
    gunicorn_threads: int = 256
    max_inflight_rpcs: int = 256
    max_inflight_per_agent: int = 16
    breaker_failures: int = 3
    breaker_cooldown: float = 30.0

    max_reply_bytes: int = 1024 * 1024

    metrics_enabled: bool = True

    auth_request_queue: str = "cluster_auth_requests"
    auth_result_queue: str = "cluster_auth_results"
    namespace_request_queue: str = "cluster_namespace_requests"
    namespace_result_queue: str = "cluster_namespace_results"
    agents_request_queue: str = "cluster_agents_requests"
    agents_result_queue: str = "cluster_agents_results"
    reply_exchange: str = "cluster_service.replies"
    auth_events_exchange: str = "cluster_service.auth_events"

    # The timeout budgets: every layer that waits on another reads them here.

    @property
    def auth_budget(self) -> float:
        """The longest authentication can take: the first-connection wait, the
        broker round trip, then the HTTP fallback when there is one."""
        return (self.broker_connect_wait + self.auth_timeout
                + (self.user_service_timeout if self.user_service_url else 0))

    @property
    def cluster_call_budget(self) -> float:
        """The longest a cluster call can take once authenticated: the first-connection
        wait, then slot waits and the agent's answer, together within WEBSOCKET_TIMEOUT."""
        return self.broker_connect_wait + self.websocket_timeout

    @property
    def auth_flight_timeout(self) -> float:
        """How long a request that joins an authentication in flight waits for it: as
        long as the leader may, plus a second, or it would fail while the leader succeeds."""
        return self.auth_budget + FLIGHT_MARGIN

    @property
    def cluster_flight_timeout(self) -> float:
        """How long a request that joins a cluster call in flight waits for it (as above)."""
        return self.cluster_call_budget + FLIGHT_MARGIN

    @property
    def longest_request(self) -> float:
        """The longest a cluster request can legitimately take, in seconds.

        First-connection wait (once), the auth round trip and its HTTP fallback,
        then the agent's answer. Waiting for a slot happens inside each call's own
        timeout. gunicorn's ``timeout`` and ``graceful_timeout`` exceed it
        (:attr:`worker_timeout`, :attr:`worker_graceful_timeout`), or they would
        cut requests that are still within their own timeouts.
        """
        return self.auth_budget + self.websocket_timeout

    @property
    def worker_timeout(self) -> int:
        """gunicorn's ``timeout``: a worker silent this long is killed."""
        return int(self.longest_request + 30)

    @property
    def worker_graceful_timeout(self) -> int:
        """gunicorn's ``graceful_timeout``: a rolling update lets requests finish this long."""
        return int(self.longest_request + 5)

    @property
    def result_queues(self) -> tuple[str, str, str]:
        """The fixed results queues the legacy peers answer on."""
        return (self.auth_result_queue, self.namespace_result_queue, self.agents_result_queue)

    def startup_warnings(self) -> list[str]:
        """Settings that work but are probably not what production wants; logged at start."""
        warnings = []
        if (self.rate_limit_enabled and self.rate_limit_storage_uri.startswith("memory://")
                and self.web_concurrency > 1):
            warnings.append(
                f"RATE_LIMIT_STORAGE_URI=memory:// with WEB_CONCURRENCY={self.web_concurrency}: "
                "every worker counts alone, so a key gets up to "
                f"{self.web_concurrency} x RATE_LIMIT_REQUESTS_PER_MINUTE and a client "
                f"{self.web_concurrency} x AUTH_FAILURES_PER_MINUTE per replica; "
                "use a redis:// URI to share the limits")
        return warnings

    def replace(self, **changes: Any) -> "Settings":
        """A copy with some fields changed (tests use it instead of the environment)."""
        return dataclasses.replace(self, **changes)


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


class _Reader:
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
        _check_range(name, result, low, high)
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


def _check_range(name: str, value: int, low: int, high: int | None) -> None:
    if value < low or (high is not None and value > high):
        span = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{name} must be {span}, got {value}")


# Variables that no longer mean anything; set, they would silently change behaviour.
RETIRED: dict[str, str] = {
    "TRUSTED_PROXIES": "TRUSTED_PROXIES (a hop count) was replaced by TRUSTED_PROXY_ADDRESSES "
                       "(the proxies' addresses or networks)",
}


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: ``os.environ``) or raise ConfigError."""
    r = _Reader(os.environ if env is None else env)
    for name, message in RETIRED.items():
        if r.raw(name) is not None:
            raise ConfigError(message)
    debug = r.boolean("DEBUG", True)
    log_level = r.text("LOG_LEVEL", "DEBUG" if debug else "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, "
                          f"got {log_level!r}")
    threads = r.integer("GUNICORN_THREADS", Settings.gunicorn_threads, 1, 2000)
    settings = Settings(
        host=r.text("HOST", Settings.host),
        port=r.integer("PORT", 8008, 1, 65535),
        debug=debug,
        log_level=log_level,
        log_file=r.text("LOG_FILE", ""),
        user_service_url=_user_service_url(r),
        user_service_verify_ssl=r.boolean("USER_SERVICE_VERIFY_SSL", True),
        user_service_ca_bundle=_existing_file(r, "USER_SERVICE_CA_BUNDLE"),
        user_service_timeout=r.number("USER_SERVICE_TIMEOUT", 5.0, 0, 300, low_inclusive=False),
        user_service_allow_http=r.boolean("USER_SERVICE_ALLOW_HTTP", False),
        rabbitmq_host=r.text("RABBITMQ_HOST", "localhost"),
        rabbitmq_port=r.integer("RABBITMQ_PORT", 5672, 1, 65535),
        rabbitmq_user=r.text("RABBITMQ_USER", "guest"),
        rabbitmq_password=r.text("RABBITMQ_PASSWORD", "guest"),
        rabbitmq_vhost=r.text("RABBITMQ_VHOST", "/"),
        rabbitmq_heartbeat=r.integer("RABBITMQ_HEARTBEAT", 30, 0, 3600),
        broker_connect_wait=r.number("BROKER_CONNECT_WAIT", 5.0, 0, 60),
        websocket_timeout=r.number("WEBSOCKET_TIMEOUT", 30.0, 0, 3600, low_inclusive=False),
        auth_timeout=r.number("AUTH_TIMEOUT", 10.0, 0, 3600, low_inclusive=False),
        auth_cache_ttl=r.number("AUTH_CACHE_TTL", 30.0, 0, 86400),
        auth_negative_cache_ttl=r.number("AUTH_NEGATIVE_CACHE_TTL", 10.0, 0, 86400),
        auth_failures_per_minute=r.integer("AUTH_FAILURES_PER_MINUTE", 10, 1),
        auth_cache_uri=_auth_cache_uri(r),
        auth_cache_secret=_auth_cache_secret(r),
        rate_limit_enabled=r.boolean("RATE_LIMIT_ENABLED", True),
        rate_limit_requests_per_minute=r.integer("RATE_LIMIT_REQUESTS_PER_MINUTE", 60, 1),
        rate_limit_storage_uri=_storage_uri(r),
        trusted_proxy_addresses=_networks(r, "TRUSTED_PROXY_ADDRESSES"),
        use_ssl=r.boolean("USE_SSL", False),
        ssl_keyfile=r.text("SSL_KEYFILE", "key.pem"),
        ssl_certfile=r.text("SSL_CERTFILE", "cert.pem"),
        header_read_timeout=r.number("HEADER_READ_TIMEOUT", 10.0, 0, 300, low_inclusive=False),
        web_concurrency=r.integer("WEB_CONCURRENCY", 2, 1, 256),
        gunicorn_threads=threads,
        max_inflight_rpcs=r.integer("MAX_INFLIGHT_RPCS", threads, 1, 100000),
        max_inflight_per_agent=r.integer("MAX_INFLIGHT_PER_AGENT",
                                         Settings.max_inflight_per_agent, 1, 100000),
        breaker_failures=r.integer("BREAKER_FAILURES", Settings.breaker_failures, 1, 1000),
        breaker_cooldown=r.number("BREAKER_COOLDOWN", Settings.breaker_cooldown, 0, 3600,
                                  low_inclusive=False),
        max_reply_bytes=r.integer("MAX_REPLY_BYTES", 1024 * 1024, 1024, 64 * 1024 * 1024),
        metrics_enabled=r.boolean("METRICS_ENABLED", True),
        auth_request_queue=r.queue("AUTH_REQUEST_QUEUE", "cluster_auth_requests"),
        auth_result_queue=r.queue("AUTH_RESULT_QUEUE", "cluster_auth_results"),
        namespace_request_queue=r.queue("NAMESPACE_REQUEST_QUEUE", "cluster_namespace_requests"),
        namespace_result_queue=r.queue("NAMESPACE_RESULT_QUEUE", "cluster_namespace_results"),
        agents_request_queue=r.queue("AGENTS_REQUEST_QUEUE", "cluster_agents_requests"),
        agents_result_queue=r.queue("AGENTS_RESULT_QUEUE", "cluster_agents_results"),
        reply_exchange=r.queue("REPLY_EXCHANGE", "cluster_service.replies"),
        auth_events_exchange=r.queue("AUTH_EVENTS_EXCHANGE", "cluster_service.auth_events"),
    )
    if settings.use_ssl:
        for name, path in (("SSL_CERTFILE", settings.ssl_certfile),
                           ("SSL_KEYFILE", settings.ssl_keyfile)):
            if not os.path.isfile(path):
                raise ConfigError(f"{name} must name a readable file when USE_SSL=true, "
                                  f"{path!r} does not exist")
    return settings


def _user_service_url(r: _Reader) -> str:
    """The fallback's base URL. Plain http:// would send API keys in clear: opt-in only."""
    name = "USER_SERVICE_URL"
    value = r.text(name, "").rstrip("/")
    if value:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ConfigError(f"{name} must be an http:// or https:// URL, got {value!r}")
        if parsed.scheme == "http" and not r.boolean("USER_SERVICE_ALLOW_HTTP", False):
            raise ConfigError(f"{name} is plain http:// (API keys would travel in clear): use "
                              "https://, or set USER_SERVICE_ALLOW_HTTP=true")
    return value


def _networks(r: _Reader, name: str) -> tuple[str, ...]:
    """A comma list of IP addresses or CIDR networks, normalised (``127.0.0.1/32``)."""
    networks = []
    for item in r.text(name, "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ConfigError(f"{name} must be a comma list of IP addresses or networks, "
                              f"got {item!r}") from None
    return tuple(networks)


def _existing_file(r: _Reader, name: str) -> str:
    value = r.text(name, "")
    if value and not os.path.isfile(value):
        raise ConfigError(f"{name} must name an existing file, {value!r} does not exist")
    return value


def _storage_uri(r: _Reader) -> str:
    value = r.text("RATE_LIMIT_STORAGE_URI", "memory://")
    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in ("memory", "redis", "rediss", "redis+sentinel", "redis+cluster"):
        raise ConfigError("RATE_LIMIT_STORAGE_URI must be memory:// or a redis:// URI, "
                          f"got scheme {scheme or value!r}")
    return value


AUTH_CACHE_SECRET_MIN = 16


def _auth_cache_uri(r: _Reader) -> str:
    value = r.text("AUTH_CACHE_URI", "")
    if not value:
        return ""
    parsed = urlparse(value)
    if parsed.scheme not in ("redis", "rediss") or not parsed.netloc:
        raise ConfigError("AUTH_CACHE_URI must be empty (off) or a redis:// or rediss:// URI "
                          f"with a host, got scheme {parsed.scheme or value!r}")
    return value


def _auth_cache_secret(r: _Reader) -> str:
    """Required with AUTH_CACHE_URI: the shared cache stores HMAC(secret, key), never the key."""
    value = r.raw("AUTH_CACHE_SECRET") or ""
    if r.text("AUTH_CACHE_URI", "") and len(value.strip()) < AUTH_CACHE_SECRET_MIN:
        raise ConfigError(f"AUTH_CACHE_SECRET must be set to at least {AUTH_CACHE_SECRET_MIN} "
                          "characters when AUTH_CACHE_URI is set")
    return value.strip()
