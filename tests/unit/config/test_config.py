"""Settings: every default, every bad value stops start-up with one line naming the variable."""

from __future__ import annotations

import dataclasses
import os
import subprocess  # nosec B404 - the test starts our own gunicorn
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from cluster_service.config.secret_files import SECRET_FILE_VARIABLES, read_secret
from cluster_service.config import ConfigError, Settings, load_settings

from ...support.config_vars import variables_read_by_load_settings
from ...support.tls_certs import self_signed

REPO = Path(__file__).resolve().parents[3]
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
# A PEM certificate and its key, valid as a CA bundle and as a client certificate.
PEM_CERT, PEM_KEY = (str(path) for path in self_signed(Path(tempfile.mkdtemp())))

# The documented defaults (README table + contract §3), written out by hand on
# purpose: a changed default in config.py must fail here until it is documented.
DEFAULTS: dict[str, Any] = {
    "host": "0.0.0.0",
    "port": 8008,
    "debug": True,
    "log_level": "DEBUG",
    "log_file": "",
    "user_service_url": "",
    "user_service_verify_ssl": True,
    "user_service_ca_bundle": "",
    "user_service_timeout": 5.0,
    "user_service_allow_http": False,
    "rabbitmq_host": "localhost",
    "rabbitmq_port": 5672,
    "rabbitmq_user": "guest",
    "rabbitmq_password": "guest",
    "rabbitmq_vhost": "/",
    "rabbitmq_heartbeat": 30,
    "broker_connect_wait": 5.0,
    "rabbitmq_tls": False,
    "rabbitmq_connect_timeout": 2.0,
    "rabbitmq_ca_file": "",
    "rabbitmq_cert_file": "",
    "rabbitmq_key_file": "",
    "redis_ca_file": "",
    "redis_timeout": 0.5,
    "websocket_timeout": 30.0,
    "auth_timeout": 10.0,
    "auth_cache_ttl": 30.0,
    "auth_negative_cache_ttl": 10.0,
    "auth_failures_per_minute": 10,
    "rate_limit_enabled": True,
    "rate_limit_requests_per_minute": 60,
    "rate_limit_storage_uri": "memory://",
    "trusted_proxy_addresses": (),
    "use_ssl": False,
    "ssl_keyfile": "key.pem",
    "ssl_certfile": "cert.pem",
    "header_read_timeout": 10.0,
    "request_queue_timeout": 5.0,
    "write_stall_timeout": 30.0,
    "max_header_bytes": 32768,
    "max_pending_header_bytes": 16777216,
    "web_concurrency": 3,
    "gunicorn_threads": 256,
    "max_inflight_rpcs": 256,
    "max_inflight_per_agent": 16,
    "breaker_failures": 3,
    "breaker_cooldown": 30.0,
    "max_reply_bytes": 1048576,
    "max_operation_reply_bytes": 16777216,
    "continue_token_ttl": 300.0,
    "metrics_enabled": True,
    "auth_request_queue": "cluster_auth_requests",
    "auth_result_queue": "cluster_auth_results",
    "namespace_request_queue": "cluster_namespace_requests",
    "namespace_result_queue": "cluster_namespace_results",
    "agents_request_queue": "cluster_agents_requests",
    "agents_result_queue": "cluster_agents_results",
    "operation_request_queue": "cluster_operation_requests",
    "operation_result_queue": "cluster_operation_results",
    "reply_exchange": "cluster_service.replies",
    "auth_cache_uri": "",
    "auth_cache_secret": "",
    "auth_events_exchange": "cluster_service.auth_events",
}

# A valid, non-default value for every variable: proves each field is read from
# the variable named after it (field ``rabbitmq_port`` <- ``RABBITMQ_PORT``).
OVERRIDES: dict[str, tuple[str, Any]] = {
    "host": ("127.0.0.1", "127.0.0.1"),
    "port": ("9009", 9009),
    "debug": ("false", False),
    "log_level": ("warning", "WARNING"),
    "log_file": ("/tmp/cluster.log", "/tmp/cluster.log"),
    "user_service_url": ("https://users.example.com/", "https://users.example.com"),
    "user_service_verify_ssl": ("no", False),
    "user_service_ca_bundle": (__file__, __file__),
    "user_service_timeout": ("2.5", 2.5),
    "user_service_allow_http": ("true", True),
    "rabbitmq_host": ("broker", "broker"),
    "rabbitmq_port": ("5673", 5673),
    "rabbitmq_user": ("svc", "svc"),
    "rabbitmq_password": ("s3cret", "s3cret"),
    "rabbitmq_vhost": ("kubesage", "kubesage"),
    "rabbitmq_heartbeat": ("0", 0),
    "broker_connect_wait": ("1.5", 1.5),
    "rabbitmq_tls": ("true", True),
    "rabbitmq_connect_timeout": ("0.5", 0.5),
    "rabbitmq_ca_file": (PEM_CERT, PEM_CERT),
    "rabbitmq_cert_file": (PEM_CERT, PEM_CERT),
    "rabbitmq_key_file": (PEM_KEY, PEM_KEY),
    "redis_ca_file": (PEM_CERT, PEM_CERT),
    "redis_timeout": ("0.2", 0.2),
    "websocket_timeout": ("0.5", 0.5),
    "auth_timeout": ("3", 3.0),
    "auth_cache_ttl": ("0", 0.0),
    "auth_negative_cache_ttl": ("0", 0.0),
    "auth_failures_per_minute": ("3", 3),
    "rate_limit_enabled": ("off", False),
    "rate_limit_requests_per_minute": ("1", 1),
    "rate_limit_storage_uri": ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    "trusted_proxy_addresses": ("127.0.0.1, ::1 ,127.0.0.0/8", ("127.0.0.1/32", "::1/128",
                                                                "127.0.0.0/8")),
    "use_ssl": ("true", True),
    "ssl_keyfile": ("/etc/tls/tls.key", "/etc/tls/tls.key"),
    "ssl_certfile": ("/etc/tls/tls.crt", "/etc/tls/tls.crt"),
    "header_read_timeout": ("2.5", 2.5),
    "request_queue_timeout": ("1.5", 1.5),
    "write_stall_timeout": ("4", 4.0),
    "max_header_bytes": ("8192", 8192),
    "max_pending_header_bytes": ("1048576", 1048576),
    "web_concurrency": ("4", 4),
    "gunicorn_threads": ("16", 16),
    "max_inflight_rpcs": ("5", 5),
    "max_inflight_per_agent": ("2", 2),
    "breaker_failures": ("5", 5),
    "breaker_cooldown": ("2.5", 2.5),
    "max_reply_bytes": ("2048", 2048),
    "max_operation_reply_bytes": ("4096", 4096),
    "continue_token_ttl": ("60", 60.0),
    "metrics_enabled": ("false", False),
    "auth_request_queue": ("a.req", "a.req"),
    "auth_result_queue": ("a.res", "a.res"),
    "namespace_request_queue": ("n:req", "n:req"),
    "namespace_result_queue": ("n:res", "n:res"),
    "agents_request_queue": ("g-req", "g-req"),
    "agents_result_queue": ("g-res", "g-res"),
    "operation_request_queue": ("o-req", "o-req"),
    "operation_result_queue": ("o-res", "o-res"),
    "reply_exchange": ("x.replies", "x.replies"),
    "auth_cache_uri": ("redis://127.0.0.1:6379/3", "redis://127.0.0.1:6379/3"),
    "auth_cache_secret": ("a-secret-of-16-chars", "a-secret-of-16-chars"),
    "auth_events_exchange": ("x.events", "x.events"),
}

# Extra variables some overrides need to be valid on their own.
EXTRA_ENV: dict[str, dict[str, str]] = {
    "use_ssl": {"SSL_CERTFILE": __file__, "SSL_KEYFILE": __file__},
    "auth_cache_uri": {"AUTH_CACHE_SECRET": "a-secret-of-16-chars"},
    "rabbitmq_key_file": {"RABBITMQ_CERT_FILE": PEM_CERT},
    "rabbitmq_cert_file": {"RABBITMQ_KEY_FILE": PEM_KEY},
}

FIELDS = [field.name for field in dataclasses.fields(Settings)]


def test_every_setting_has_a_documented_default() -> None:
    assert sorted(FIELDS) == sorted(DEFAULTS)
    assert sorted(FIELDS) == sorted(OVERRIDES)


@pytest.mark.parametrize("name", FIELDS)
def test_default(name: str) -> None:
    assert getattr(load_settings({}), name) == DEFAULTS[name]


def test_dataclass_defaults_match_the_loader() -> None:
    assert load_settings({}) == Settings()


@pytest.mark.parametrize("name", FIELDS)
def test_each_field_is_read_from_its_upper_case_variable(name: str) -> None:
    raw, expected = OVERRIDES[name]
    assert expected != DEFAULTS[name]
    env = {**EXTRA_ENV.get(name, {}), name.upper(): raw}
    assert getattr(load_settings(env), name) == expected


def test_loader_reads_exactly_the_settings_variables() -> None:
    assert variables_read_by_load_settings() == {name.upper() for name in FIELDS} | {
        f"{name}_FILE" for name in SECRET_FILE_VARIABLES}


def test_blank_values_mean_the_default() -> None:
    assert load_settings({name.upper(): "  " for name in FIELDS}) == Settings()


def test_queue_names_default_to_the_contract() -> None:
    assert load_settings({}).result_queues == (
        "cluster_auth_results", "cluster_namespace_results", "cluster_agents_results",
        "cluster_operation_results")


def test_debug_false_lowers_the_default_log_level() -> None:
    settings = load_settings({"DEBUG": "false"})
    assert (settings.debug, settings.log_level) == (False, "INFO")


def test_explicit_log_level_wins_over_debug() -> None:
    assert load_settings({"DEBUG": "true", "LOG_LEVEL": "error"}).log_level == "ERROR"


def test_rpc_slots_default_to_the_thread_count() -> None:
    assert load_settings({"GUNICORN_THREADS": "20"}).max_inflight_rpcs == 20
    assert load_settings({}).max_inflight_rpcs == 256


def test_the_longest_request_is_its_timeouts_without_slot_waits() -> None:
    settings = load_settings({"BROKER_CONNECT_WAIT": "2", "AUTH_TIMEOUT": "3",
                              "WEBSOCKET_TIMEOUT": "7"})
    assert settings.longest_request == 12
    with_fallback = load_settings({"BROKER_CONNECT_WAIT": "2", "AUTH_TIMEOUT": "3",
                                   "WEBSOCKET_TIMEOUT": "7", "USER_SERVICE_TIMEOUT": "4",
                                   "USER_SERVICE_URL": "https://127.0.0.1:9"})
    assert with_fallback.longest_request == 16


@pytest.mark.parametrize("raw, expected", [
    ("1", True), ("true", True), ("TRUE", True), ("yes", True), (" on ", True),
    ("0", False), ("false", False), ("No", False), ("off", False),
])
def test_boolean_spellings(raw: str, expected: bool) -> None:
    assert load_settings({"RATE_LIMIT_ENABLED": raw}).rate_limit_enabled is expected


def test_use_ssl_with_existing_files(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert")
    key.write_text("key")
    settings = load_settings({"USE_SSL": "true", "SSL_CERTFILE": str(cert),
                              "SSL_KEYFILE": str(key)})
    assert (settings.use_ssl, settings.ssl_certfile, settings.ssl_keyfile) == (
        True, str(cert), str(key))


BAD_VALUES = [
    ("PORT", {"PORT": "abc"}),
    ("PORT", {"PORT": "0"}),
    ("PORT", {"PORT": "70000"}),
    ("PORT", {"PORT": "80.5"}),
    ("PORT", {"PORT": "80\n81"}),
    ("RABBITMQ_PORT", {"RABBITMQ_PORT": "-1"}),
    ("RABBITMQ_HEARTBEAT", {"RABBITMQ_HEARTBEAT": "3601"}),
    ("RATE_LIMIT_REQUESTS_PER_MINUTE", {"RATE_LIMIT_REQUESTS_PER_MINUTE": "-1"}),
    ("RATE_LIMIT_REQUESTS_PER_MINUTE", {"RATE_LIMIT_REQUESTS_PER_MINUTE": "0"}),
    ("RATE_LIMIT_REQUESTS_PER_MINUTE", {"RATE_LIMIT_REQUESTS_PER_MINUTE": "lots"}),
    ("WEBSOCKET_TIMEOUT", {"WEBSOCKET_TIMEOUT": "0"}),
    ("WEBSOCKET_TIMEOUT", {"WEBSOCKET_TIMEOUT": "-5"}),
    ("WEBSOCKET_TIMEOUT", {"WEBSOCKET_TIMEOUT": "nan"}),
    ("WEBSOCKET_TIMEOUT", {"WEBSOCKET_TIMEOUT": "inf"}),
    ("WEBSOCKET_TIMEOUT", {"WEBSOCKET_TIMEOUT": "thirty"}),
    ("AUTH_TIMEOUT", {"AUTH_TIMEOUT": "0"}),
    ("AUTH_CACHE_TTL", {"AUTH_CACHE_TTL": "-1"}),
    ("AUTH_NEGATIVE_CACHE_TTL", {"AUTH_NEGATIVE_CACHE_TTL": "-0.5"}),
    ("AUTH_FAILURES_PER_MINUTE", {"AUTH_FAILURES_PER_MINUTE": "0"}),
    ("USER_SERVICE_TIMEOUT", {"USER_SERVICE_TIMEOUT": "0"}),
    ("BROKER_CONNECT_WAIT", {"BROKER_CONNECT_WAIT": "61"}),
    ("BREAKER_FAILURES", {"BREAKER_FAILURES": "0"}),
    ("BREAKER_COOLDOWN", {"BREAKER_COOLDOWN": "0"}),
    ("MAX_REPLY_BYTES", {"MAX_REPLY_BYTES": "10"}),
    ("DEBUG", {"DEBUG": "maybe"}),
    ("RATE_LIMIT_ENABLED", {"RATE_LIMIT_ENABLED": "2"}),
    ("USE_SSL", {"USE_SSL": "sometimes"}),
    ("METRICS_ENABLED", {"METRICS_ENABLED": "y"}),
    ("USER_SERVICE_VERIFY_SSL", {"USER_SERVICE_VERIFY_SSL": "nope"}),
    ("SSL_CERTFILE", {"USE_SSL": "true", "SSL_CERTFILE": "/nonexistent/cert.pem"}),
    ("USER_SERVICE_URL", {"USER_SERVICE_URL": "ftp://x"}),
    ("USER_SERVICE_URL", {"USER_SERVICE_URL": "http://"}),
    ("USER_SERVICE_URL", {"USER_SERVICE_URL": "users.example.com"}),
    ("USER_SERVICE_CA_BUNDLE", {"USER_SERVICE_CA_BUNDLE": "/nonexistent/ca.pem"}),
    ("RATE_LIMIT_STORAGE_URI", {"RATE_LIMIT_STORAGE_URI": "mongodb://x"}),
    ("RATE_LIMIT_STORAGE_URI", {"RATE_LIMIT_STORAGE_URI": "localhost:6379"}),
    ("TRUSTED_PROXIES", {"TRUSTED_PROXIES": "1"}),  # retired: names its replacement
    ("TRUSTED_PROXY_ADDRESSES", {"TRUSTED_PROXY_ADDRESSES": "1"}),
    ("TRUSTED_PROXY_ADDRESSES", {"TRUSTED_PROXY_ADDRESSES": "127.0.0.1, nginx"}),
    ("TRUSTED_PROXY_ADDRESSES", {"TRUSTED_PROXY_ADDRESSES": "127.0.0.1/33"}),
    ("USER_SERVICE_URL", {"USER_SERVICE_URL": "http://127.0.0.1:9"}),
    ("USER_SERVICE_ALLOW_HTTP", {"USER_SERVICE_ALLOW_HTTP": "maybe"}),
    ("HEADER_READ_TIMEOUT", {"HEADER_READ_TIMEOUT": "0"}),
    ("HEADER_READ_TIMEOUT", {"HEADER_READ_TIMEOUT": "301"}),
    ("WEB_CONCURRENCY", {"WEB_CONCURRENCY": "0"}),
    ("GUNICORN_THREADS", {"GUNICORN_THREADS": "0"}),
    ("MAX_INFLIGHT_RPCS", {"MAX_INFLIGHT_RPCS": "0"}),
    ("MAX_INFLIGHT_PER_AGENT", {"MAX_INFLIGHT_PER_AGENT": "0"}),
    ("AUTH_REQUEST_QUEUE", {"AUTH_REQUEST_QUEUE": "bad queue"}),
    ("AUTH_RESULT_QUEUE", {"AUTH_RESULT_QUEUE": "results/\u00e9"}),
    ("NAMESPACE_REQUEST_QUEUE", {"NAMESPACE_REQUEST_QUEUE": "q" * 201}),
    ("AGENTS_RESULT_QUEUE", {"AGENTS_RESULT_QUEUE": "amq\nbad"}),
    ("REPLY_EXCHANGE", {"REPLY_EXCHANGE": "x;y"}),
    ("LOG_LEVEL", {"LOG_LEVEL": "LOUD"}),
    ("AUTH_CACHE_URI", {"AUTH_CACHE_URI": "memcached://x", "AUTH_CACHE_SECRET": "s" * 16}),
    ("AUTH_CACHE_URI", {"AUTH_CACHE_URI": "redis://", "AUTH_CACHE_SECRET": "s" * 16}),
    ("AUTH_CACHE_SECRET", {"AUTH_CACHE_URI": "redis://127.0.0.1:6379/0"}),
    ("AUTH_CACHE_SECRET", {"AUTH_CACHE_URI": "redis://127.0.0.1:6379/0",
                           "AUTH_CACHE_SECRET": "short"}),
    ("AUTH_EVENTS_EXCHANGE", {"AUTH_EVENTS_EXCHANGE": "x y"}),
    ("RABBITMQ_HOST", {"RABBITMQ_HOST": "a,b:0"}),
    ("RABBITMQ_HOST", {"RABBITMQ_HOST": "a:x"}),
    ("RABBITMQ_HOST", {"RABBITMQ_HOST": "user@a"}),
    ("RABBITMQ_HOST", {"RABBITMQ_HOST": " , "}),
    ("RABBITMQ_CONNECT_TIMEOUT", {"RABBITMQ_CONNECT_TIMEOUT": "0"}),
    ("RABBITMQ_TLS", {"RABBITMQ_TLS": "maybe"}),
    ("RABBITMQ_CA_FILE", {"RABBITMQ_CA_FILE": "/nonexistent/ca.pem"}),
    ("RABBITMQ_KEY_FILE", {"RABBITMQ_KEY_FILE": __file__}),  # a key without its certificate
    ("REDIS_CA_FILE", {"REDIS_CA_FILE": "/nonexistent/ca.pem"}),
    ("REDIS_CA_FILE", {"REDIS_CA_FILE": __file__}),  # not PEM
    ("RABBITMQ_CA_FILE", {"RABBITMQ_CA_FILE": __file__}),
    ("RABBITMQ_CERT_FILE", {"RABBITMQ_CERT_FILE": __file__}),
    ("REDIS_TIMEOUT", {"REDIS_TIMEOUT": "0"}),
    ("RABBITMQ_PASSWORD", {"RABBITMQ_PASSWORD": "x", "RABBITMQ_PASSWORD_FILE": __file__}),
    ("AUTH_CACHE_SECRET_FILE", {"AUTH_CACHE_SECRET_FILE": "/nonexistent/secret"}),
]


def test_the_auth_cache_secret_is_kept_out_of_the_settings_repr() -> None:
    settings = load_settings({"AUTH_CACHE_URI": "redis://127.0.0.1:6379/0",
                              "AUTH_CACHE_SECRET": "do-not-print-this-secret"})
    assert "do-not-print-this-secret" not in repr(settings)


@pytest.mark.parametrize("variable, env", BAD_VALUES,
                         ids=[f"{v}={next(iter(e.values()))!r}"[:60] for v, e in BAD_VALUES])
def test_bad_value_is_one_line_naming_the_variable(variable: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message
    assert message.split()[0] == variable, message


def test_missing_key_file_names_the_key(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("cert")
    with pytest.raises(ConfigError, match=r"^SSL_KEYFILE "):
        load_settings({"USE_SSL": "true", "SSL_CERTFILE": str(cert),
                       "SSL_KEYFILE": str(tmp_path / "missing.pem")})


def test_plain_http_user_service_needs_the_explicit_opt_in() -> None:
    settings = load_settings({"USER_SERVICE_URL": "http://127.0.0.1:9",
                              "USER_SERVICE_ALLOW_HTTP": "true"})
    assert settings.user_service_url == "http://127.0.0.1:9"
    assert load_settings({"USER_SERVICE_URL": "https://localhost:9"}).user_service_url


def test_retired_trusted_proxies_names_its_replacement() -> None:
    with pytest.raises(ConfigError, match="TRUSTED_PROXY_ADDRESSES"):
        load_settings({"TRUSTED_PROXIES": "0"})


@pytest.mark.parametrize("env, warned", [
    ({}, True),  # memory:// and 2 workers by default
    ({"WEB_CONCURRENCY": "1"}, False),
    ({"RATE_LIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0"}, False),
    ({"RATE_LIMIT_ENABLED": "false"}, False),
])
def test_memory_storage_with_several_workers_is_warned_about(
        env: dict[str, str], warned: bool) -> None:
    warnings = load_settings(env).startup_warnings()
    assert bool(warnings) is warned
    assert all("RATE_LIMIT_STORAGE_URI" in w and "\n" not in w for w in warnings)


@pytest.mark.gunicorn
def test_gunicorn_logs_the_warning_at_start(tmp_path: Path) -> None:
    from ...support.service import ServiceProcess

    service = ServiceProcess(tmp_path, {"WEB_CONCURRENCY": "2", "RATE_LIMIT_ENABLED": "true",
                                        "RABBITMQ_PORT": "1"})
    try:
        service.start(ready=False)
        lines = [line for line in service.logs().splitlines()
                 if "RATE_LIMIT_STORAGE_URI=memory://" in line]
        assert len(lines) == 1, service.logs()  # once, from the master, not per worker
        assert "WEB_CONCURRENCY=2" in lines[0]
    finally:
        service.stop()
    quiet = ServiceProcess(tmp_path, {"WEB_CONCURRENCY": "1", "RATE_LIMIT_ENABLED": "true",
                                      "RABBITMQ_PORT": "1"})
    try:
        quiet.start(ready=False)
        assert "RATE_LIMIT_STORAGE_URI=memory://" not in quiet.logs()
    finally:
        quiet.stop()


class TestBrokerNodes:
    def test_one_host_keeps_the_old_meaning(self) -> None:
        assert load_settings({"RABBITMQ_HOST": "broker", "RABBITMQ_PORT": "5673"}
                             ).broker_nodes == (("broker", 5673),)

    def test_a_list_of_nodes_in_order_with_their_own_ports(self) -> None:
        settings = load_settings({"RABBITMQ_HOST": "rmq-0, rmq-1:5680,[::1]:5681,[fe80::1]"})
        assert settings.broker_nodes == (("rmq-0", 5672), ("rmq-1", 5680), ("::1", 5681),
                                         ("fe80::1", 5672))

    def test_tls_changes_the_default_port_only(self) -> None:
        assert load_settings({"RABBITMQ_TLS": "true"}).rabbitmq_port == 5671
        assert load_settings({"RABBITMQ_TLS": "true", "RABBITMQ_PORT": "5000"}
                             ).rabbitmq_port == 5000


class TestSecretFiles:
    @pytest.mark.parametrize("variable, field, value", [
        ("RABBITMQ_PASSWORD", "rabbitmq_password", "p@ss word"),
        ("AUTH_CACHE_SECRET", "auth_cache_secret", "a-secret-of-16-chars"),
        ("AUTH_CACHE_URI", "auth_cache_uri", "rediss://:pw@127.0.0.1:6380/0"),
        ("RATE_LIMIT_STORAGE_URI", "rate_limit_storage_uri", "redis://:pw@127.0.0.1:6379/1"),
    ])
    def test_read_from_the_file_less_one_trailing_newline(
            self, tmp_path: Path, variable: str, field: str, value: str) -> None:
        path = tmp_path / "secret"
        path.write_text(value + "\n")
        env = {f"{variable}_FILE": str(path), "AUTH_CACHE_SECRET": "s" * 16}
        if variable == "AUTH_CACHE_SECRET":
            del env["AUTH_CACHE_SECRET"]
        assert getattr(load_settings(env), field) == value

    def test_only_one_newline_is_dropped(self, tmp_path: Path) -> None:
        path = tmp_path / "password"
        path.write_bytes(b"  pw\n\n")
        assert read_secret("RABBITMQ_PASSWORD_FILE", str(path)) == "  pw\n"

    def test_both_set_names_both_never_the_value(self, tmp_path: Path) -> None:
        path = tmp_path / "password"
        path.write_text("from-the-file")
        with pytest.raises(ConfigError) as error:
            load_settings({"RABBITMQ_PASSWORD": "from-the-env",
                           "RABBITMQ_PASSWORD_FILE": str(path)})
        message = str(error.value)
        assert "RABBITMQ_PASSWORD" in message and "RABBITMQ_PASSWORD_FILE" in message
        assert "from-the" not in message and "\n" not in message

    def test_an_unreadable_file_names_the_variable(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as error:
            load_settings({"AUTH_CACHE_SECRET_FILE": str(tmp_path)})  # a directory
        assert "AUTH_CACHE_SECRET_FILE" in str(error.value)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def _start_gunicorn(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run gunicorn with the real gunicorn.conf.py in an empty directory (no .env)."""
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return subprocess.run(  # nosec B603 - fixed argv, our own files
        [GUNICORN, "-c", str(REPO / "gunicorn.conf.py"), "--pythonpath", str(REPO), "wsgi:app"],
        cwd=tmp_path, env={**clean, "HOST": "127.0.0.1", **env},
        capture_output=True, text=True, timeout=60)


@pytest.mark.gunicorn
@pytest.mark.parametrize("env, variable", [
    ({"PORT": "abc"}, "PORT"),
    ({"USE_SSL": "true"}, "SSL_CERTFILE"),  # default cert.pem does not exist in tmp_path
    ({"RABBITMQ_PASSWORD": "pw-in-env", "RABBITMQ_PASSWORD_FILE": __file__},
     "RABBITMQ_PASSWORD_FILE"),
    ({"AUTH_CACHE_SECRET_FILE": "/nonexistent/secret"}, "AUTH_CACHE_SECRET_FILE"),
], ids=["PORT=abc", "USE_SSL-missing-cert", "secret-twice", "secret-file-unreadable"])
def test_gunicorn_refuses_to_start_with_one_line(tmp_path: Path, env: dict[str, str],
                                                 variable: str) -> None:
    result = _start_gunicorn(tmp_path, **env)
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert "pw-in-env" not in result.stderr + result.stdout
