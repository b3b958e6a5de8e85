"""Build :class:`Settings` from the environment, one table row per variable.

Each row says how to read and check its variable; the default is the
dataclass field's, so every default is written once (in ``settings.py``).
A default that depends on another setting (``LOG_LEVEL`` on ``DEBUG``,
``MAX_INFLIGHT_RPCS`` on ``GUNICORN_THREADS``) is derived in ``_DERIVED``.

`.env` files are *not* read here: only the process edges (``wsgi.py``,
``gunicorn.conf.py``) call ``load_dotenv``, so tests never see a developer's
``.env``.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import sys
from typing import Any, Callable, Mapping

from . import reader as check
from .reader import ConfigError, Reader
from .secret_files import with_secret_files
from .settings import Settings

# (reader, variable name, default) -> value
Read = Callable[[Reader, str, Any], Any]


def _text(r: Reader, name: str, default: Any) -> Any:
    return r.text(name, default)


def _boolean(r: Reader, name: str, default: Any) -> Any:
    return r.boolean(name, default)


def _queue(r: Reader, name: str, default: Any) -> Any:
    return r.queue(name, default)


def _integer(low: int, high: int | None = None) -> Read:
    return lambda r, name, default: r.integer(name, default, low, high)


def _number(low: float, high: float | None = None, *, low_inclusive: bool = True) -> Read:
    return lambda r, name, default: r.number(name, default, low, high, low_inclusive)


def _positive(high: float) -> Read:
    return _number(0, high, low_inclusive=False)


def _log_level(r: Reader, name: str, default: Any) -> Any:
    value = r.text(name, default).upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"{name} must be DEBUG, INFO, WARNING, ERROR or CRITICAL, "
                          f"got {value!r}")
    return value


_ROWS: dict[str, Read] = {
    "host": _text,
    "port": _integer(1, 65535),
    "debug": _boolean,
    "log_level": _log_level,
    "log_file": _text,
    "user_service_url": check.user_service_url,
    "user_service_verify_ssl": _boolean,
    "user_service_ca_bundle": check.existing_file,
    "user_service_timeout": _positive(300),
    "user_service_allow_http": _boolean,
    "rabbitmq_host": check.broker_hosts,
    "rabbitmq_tls": _boolean,
    "rabbitmq_port": _integer(1, 65535),
    "rabbitmq_user": _text,
    "rabbitmq_password": _text,
    "rabbitmq_vhost": _text,
    "rabbitmq_heartbeat": _integer(0, 3600),
    "broker_connect_wait": _number(0, 60),
    "rabbitmq_connect_timeout": _positive(60),
    "rabbitmq_ca_file": check.existing_file,
    "rabbitmq_cert_file": check.existing_file,
    "rabbitmq_key_file": check.existing_file,
    "websocket_timeout": _positive(3600),
    "auth_timeout": _positive(3600),
    "auth_cache_ttl": _number(0, 86400),
    "auth_negative_cache_ttl": _number(0, 86400),
    "auth_failures_per_minute": _integer(1),
    "auth_cache_uri": check.auth_cache_uri,
    "auth_cache_secret": check.auth_cache_secret,
    "redis_ca_file": check.existing_file,
    "redis_timeout": _positive(30),
    "rate_limit_enabled": _boolean,
    "rate_limit_requests_per_minute": _integer(1),
    "rate_limit_storage_uri": check.storage_uri,
    "trusted_proxy_addresses": check.networks,
    "use_ssl": _boolean,
    "ssl_keyfile": _text,
    "ssl_certfile": _text,
    "header_read_timeout": _positive(300),
    "request_queue_timeout": _positive(60),
    "write_stall_timeout": _positive(300),
    "max_header_bytes": _integer(1024, 1024 * 1024),
    "max_pending_header_bytes": _integer(64 * 1024, 1024 * 1024 * 1024),
    "web_concurrency": _integer(1, 256),
    "gunicorn_threads": _integer(1, 2000),
    "max_inflight_rpcs": _integer(1, 100000),
    "max_inflight_per_agent": _integer(1, 100000),
    "breaker_failures": _integer(1, 1000),
    "breaker_cooldown": _positive(3600),
    "max_reply_bytes": _integer(1024, 64 * 1024 * 1024),
    "max_operation_reply_bytes": _integer(1024, 256 * 1024 * 1024),
    "continue_token_ttl": _positive(86400),
    "metrics_enabled": _boolean,
    "auth_request_queue": _queue,
    "auth_result_queue": _queue,
    "namespace_request_queue": _queue,
    "namespace_result_queue": _queue,
    "agents_request_queue": _queue,
    "agents_result_queue": _queue,
    "operation_request_queue": _queue,
    "operation_result_queue": _queue,
    "reply_exchange": _queue,
    "auth_events_exchange": _queue,
}

# Defaults that follow another setting read before them.
_DERIVED: dict[str, Callable[[dict[str, Any]], Any]] = {
    "log_level": lambda values: "DEBUG" if values["debug"] else "INFO",
    "max_inflight_rpcs": lambda values: values["gunicorn_threads"],
    "rabbitmq_port": lambda values: 5671 if values["rabbitmq_tls"] else 5672,
}

# Variables that no longer mean anything; set, they would silently change behaviour.
RETIRED: dict[str, str] = {
    "TRUSTED_PROXIES": "TRUSTED_PROXIES (a hop count) was replaced by TRUSTED_PROXY_ADDRESSES "
                       "(the proxies' addresses or networks)",
}

_FIELDS = dataclasses.fields(Settings)
if {f.name for f in _FIELDS} != set(_ROWS):  # a new field without its row fails at import
    raise RuntimeError(f"settings without a row: {sorted({f.name for f in _FIELDS} ^ set(_ROWS))}")


def settings_or_exit() -> Settings:
    """For the process edges (``wsgi.py``, ``gunicorn.conf.py``): the settings from the
    environment, or one line naming the variable on stderr and exit status 2."""
    try:
        return load_settings()
    except ConfigError as error:
        print(f"cluster_service: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: ``os.environ``) or raise ConfigError."""
    r = Reader(with_secret_files(os.environ if env is None else env))
    for name, message in RETIRED.items():
        if r.raw(name) is not None:
            raise ConfigError(message)
    values: dict[str, Any] = {}
    for field in _FIELDS:
        derive = _DERIVED.get(field.name)
        default = derive(values) if derive else field.default
        values[field.name] = _ROWS[field.name](r, field.name.upper(), default)
    settings = Settings(**values)
    if settings.use_ssl:
        for name, path in (("SSL_CERTFILE", settings.ssl_certfile),
                           ("SSL_KEYFILE", settings.ssl_keyfile)):
            if not os.path.isfile(path):
                raise ConfigError(f"{name} must name a readable file when USE_SSL=true, "
                                  f"{path!r} does not exist")
    if settings.rabbitmq_key_file and not settings.rabbitmq_cert_file:
        raise ConfigError("RABBITMQ_KEY_FILE needs RABBITMQ_CERT_FILE (the client certificate)")
    check_tls_files(settings)
    return settings


def check_tls_files(settings: Settings) -> None:
    """The CA bundles and the client certificate load (PEM), or one line naming the variable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for name, path in (("RABBITMQ_CA_FILE", settings.rabbitmq_ca_file),
                       ("REDIS_CA_FILE", settings.redis_ca_file)):
        if path:
            try:
                context.load_verify_locations(cafile=path)
            except (ssl.SSLError, OSError, ValueError):
                raise ConfigError(f"{name} must be a PEM file of CA certificates, "
                                  f"{path!r} is not") from None
    if settings.rabbitmq_cert_file:
        try:
            context.load_cert_chain(settings.rabbitmq_cert_file,
                                    settings.rabbitmq_key_file or None)
        except (ssl.SSLError, OSError, ValueError):
            raise ConfigError("RABBITMQ_CERT_FILE and RABBITMQ_KEY_FILE must be a PEM "
                              "certificate and its private key (unencrypted)") from None
