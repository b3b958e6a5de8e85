"""The settings of one process: every variable, its type and its default, written once.

Each field is the variable of the same name in upper case (``port`` is
``PORT``); :mod:`.loading` reads and validates them. The properties are the
rules derived from several settings (the timeout budgets), so each is written
in one place.
"""

from __future__ import annotations

import dataclasses

from .nodes import parse_nodes

# What a request that joins one in flight waits beyond the leader's own budget.
FLIGHT_MARGIN = 1.0


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

    rabbitmq_host: str = "localhost"  # or a comma list of host[:port], tried in order
    rabbitmq_tls: bool = False
    rabbitmq_port: int = 5672  # 5671 by default with RABBITMQ_TLS
    rabbitmq_user: str = "guest"
    rabbitmq_password: str = dataclasses.field(default="guest",  # RabbitMQ's local default
                                               repr=False)
    rabbitmq_vhost: str = "/"
    rabbitmq_heartbeat: int = 30
    broker_connect_wait: float = 5.0
    rabbitmq_connect_timeout: float = 2.0
    rabbitmq_ca_file: str = ""
    rabbitmq_cert_file: str = ""
    rabbitmq_key_file: str = ""

    websocket_timeout: float = 30.0
    auth_timeout: float = 10.0
    auth_cache_ttl: float = 30.0
    auth_negative_cache_ttl: float = 10.0
    auth_failures_per_minute: int = 10
    auth_cache_uri: str = dataclasses.field(default="", repr=False)  # may hold a password
    auth_cache_secret: str = dataclasses.field(default="", repr=False)
    redis_ca_file: str = ""
    redis_timeout: float = 0.5

    rate_limit_enabled: bool = True
    rate_limit_requests_per_minute: int = 60
    rate_limit_storage_uri: str = dataclasses.field(default="memory://", repr=False)
    trusted_proxy_addresses: tuple[str, ...] = ()

    use_ssl: bool = False
    ssl_keyfile: str = "key.pem"
    ssl_certfile: str = "cert.pem"

    header_read_timeout: float = 10.0
    request_queue_timeout: float = 5.0
    write_stall_timeout: float = 30.0
    max_header_bytes: int = 32 * 1024
    max_pending_header_bytes: int = 16 * 1024 * 1024

    web_concurrency: int = 3
    gunicorn_threads: int = 256
    max_inflight_rpcs: int = 256
    max_inflight_per_agent: int = 16
    breaker_failures: int = 3
    breaker_cooldown: float = 30.0

    max_reply_bytes: int = 1024 * 1024
    # A 20,000-pod get-pods reply in the agent's shape is about 6.5 MB (docs/performance.md).
    max_operation_reply_bytes: int = 16 * 1024 * 1024
    continue_token_ttl: float = 300.0

    metrics_enabled: bool = True

    auth_request_queue: str = "cluster_auth_requests"
    auth_result_queue: str = "cluster_auth_results"
    namespace_request_queue: str = "cluster_namespace_requests"
    namespace_result_queue: str = "cluster_namespace_results"
    agents_request_queue: str = "cluster_agents_requests"
    agents_result_queue: str = "cluster_agents_results"
    operation_request_queue: str = "cluster_operation_requests"
    operation_result_queue: str = "cluster_operation_results"
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
    def longest_reply_wait(self) -> float:
        """The longest any RPC waits for its reply (auth or an agent's); a reply forwarded
        to another worker is worth keeping no longer than that."""
        return max(self.websocket_timeout, self.auth_timeout)

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
    def request_queues(self) -> tuple[str, ...]:
        """The request queues this service publishes to (declared at connect)."""
        return (self.auth_request_queue, self.namespace_request_queue,
                self.agents_request_queue, self.operation_request_queue)

    @property
    def broker_nodes(self) -> tuple[tuple[str, int], ...]:
        """``RABBITMQ_HOST``'s nodes as (host, port), in the order they are tried."""
        return parse_nodes(self.rabbitmq_host, self.rabbitmq_port)

    @property
    def result_queues(self) -> tuple[str, ...]:
        """The fixed results queues the legacy peers answer on."""
        return (self.auth_result_queue, self.namespace_result_queue, self.agents_result_queue,
                self.operation_result_queue)

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
