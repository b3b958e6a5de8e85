"""Domain errors, in one flat module.

Lower layers raise these. Each class carries its own HTTP status and the
contract's error code (``http_status``, ``error_code``): the one HTTP handler
(``api/error_handlers.py``), the peers' wire-code lookup (``domain/clusters.py``)
and the OpenAPI builder all read them here, and a test checks the README's
error table against them. Messages are safe to show a client: they never hold
an API key, a message body or an exception's text.
"""

from __future__ import annotations

# What a 503 tells a client to wait before trying again, unless the error knows better.
RETRY_AFTER_SECONDS = 5


class ClusterServiceError(Exception):
    """Base of every error this service raises on purpose."""

    http_status = 500
    error_code = "internal_error"
    message = "Internal server error"
    # Seconds for the Retry-After header; None: the status's default (RETRY_AFTER_SECONDS on 503).
    retry_after: int | None = None

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message


class InvalidRequest(ClusterServiceError):
    """The client's input is malformed; the message names the field."""

    http_status = 400
    error_code = "invalid_request"

    message = "Invalid request"


class ContinueExpired(ClusterServiceError):
    """A ``continue`` token the service can no longer honour: the list changed, or the
    token is too old. The client starts the list again; it never gets a different list
    silently."""

    http_status = 410
    error_code = "continue_expired"

    message = "The list changed or the continue token expired; start the list again"


class AuthenticationFailed(ClusterServiceError):
    """The key is missing, malformed, or rejected by the User Service."""

    http_status = 401
    error_code = "authentication_failed"

    message = "Authentication failed"


class AuthBackendUnavailable(ClusterServiceError):
    """No auth backend could give an answer (broker, User Service and fallback all failed)."""

    http_status = 503
    error_code = "service_unavailable"

    message = "Authentication service unavailable"


class TooManyAuthFailures(ClusterServiceError):
    """This client address failed authentication too often (brute-force defence)."""

    http_status = 429
    error_code = "rate_limit_exceeded"

    message = "Rate limit exceeded"

    def __init__(self, retry_after: int = 60) -> None:
        super().__init__()
        self.retry_after = retry_after


class RpcError(ClusterServiceError):
    """Something went wrong with a request/reply exchange over the broker."""


class BrokerUnavailable(RpcError):
    """The broker connection is down or never came up; the request is not in flight."""

    http_status = 503
    error_code = "service_unavailable"

    message = "Message broker unavailable"


class NoConsumer(BrokerUnavailable):
    """Nobody consumes the request queue (the peer is down or never implemented it).

    Answered at once rather than after the call's timeout: a request published
    there could only expire unread.
    """

    def __init__(self, peer: str) -> None:
        super().__init__(f"{peer} unavailable: nobody consumes its request queue")
        self.peer = peer


class Saturated(RpcError):
    """No slot for this call before its deadline: every thread or slot it needs is taken."""

    http_status = 503
    error_code = "service_unavailable"

    message = "Service is saturated, retry later"
    retry_after = RETRY_AFTER_SECONDS


class AgentUnresponsive(Saturated):
    """The agent's calls timed out repeatedly; its breaker is open, so this call fails fast."""

    def __init__(self, agent_id: object, retry_after: int) -> None:
        super().__init__(f"Agent {agent_id} is not responding; calls to it are paused, "
                         f"retry in {retry_after} seconds")
        self.retry_after = retry_after


class RpcTimeout(RpcError):
    """No reply arrived within the request's timeout."""

    http_status = 504
    error_code = "agent_timeout"

    def __init__(self, timeout: float) -> None:
        super().__init__(f"Agent did not respond within {timeout:g} seconds")
        self.timeout = timeout


class RemoteError(RpcError):
    """The peer (or the agent behind it) answered with an error or an invalid reply.

    A subclass whose ``error_code`` a peer may send on the wire is in ``PEER_ERRORS``.
    """

    http_status = 502
    error_code = "agent_error"

    message = "Failed to communicate with agent"

    def __init__(self, detail: str = "") -> None:
        base = "Failed to communicate with agent"
        super().__init__(f"{base}: {detail}" if detail else base)


class AgentNotConnected(RemoteError):
    """The Onboarding Service says the agent is unknown or not connected."""

    http_status = 404
    error_code = "agent_not_connected"

    def __init__(self, agent_id: str = "") -> None:
        super().__init__("agent is not connected")
        self.message = (f"Agent {agent_id} is not connected" if agent_id
                        else "Agent is not connected")


class Forbidden(RemoteError):
    """The Onboarding Service says this user may not use this agent."""

    http_status = 403
    error_code = "forbidden"

    def __init__(self) -> None:
        super().__init__("access denied")
        self.message = "You are not allowed to use this agent"


class AgentTimeout(RemoteError):
    """The Onboarding Service itself reports that the agent did not answer."""

    http_status = 504
    error_code = "agent_timeout"

    def __init__(self) -> None:
        super().__init__("agent did not respond")
        self.message = "Agent did not respond in time"


# The errors a peer names by their ``error_code`` in a reply (contract §2).
PEER_ERRORS: tuple[type[RemoteError], ...] = (AgentNotConnected, Forbidden, AgentTimeout)


def all_errors() -> list[type[ClusterServiceError]]:
    """Every domain error class, the base first (for the OpenAPI builder and the tests)."""
    found: list[type[ClusterServiceError]] = [ClusterServiceError]
    for kind in found:
        found.extend(kind.__subclasses__())
    return found
