"""The narrow interface through which the RPC and auth layers report what happened.

Those layers must not depend on prometheus_client or Flask; they call an
``Observer``. ``metrics.PrometheusObserver`` implements it for production, and
tests use the no-op base class or a recording subclass.
"""

from __future__ import annotations


class Observer:
    """Receives events; every method is a no-op here so a subclass overrides only what it needs."""

    def rpc_published(self, queue: str) -> None:
        """A request message was handed to the broker connection."""

    def rpc_finished(self, queue: str, outcome: str, seconds: float) -> None:
        """An RPC ended: outcome is ok, timeout, error or broker_unavailable."""

    def operation_finished(self, operation: str, outcome: str, seconds: float) -> None:
        """A cluster operation's fetch ended (one per RPC, not per request sharing it):
        ``outcome`` is ok or the error code it failed with."""

    def rpc_inflight(self, delta: int) -> None:
        """The number of RPCs waiting for a reply in this worker changed by ``delta``."""

    def reply_received(self, via: str) -> None:
        """A reply was delivered to this worker: on its own queue, a fixed one, or relayed."""

    def reply_dropped(self, reason: str) -> None:
        """A reply was not delivered. ``reason``: too_large (over MAX_REPLY_BYTES), unroutable
        (no usable request id), duplicate (its call already answered), unknown (no such
        call, or it ended), not_owner (another worker's, and cannot be sent on) or
        owner_gone (sent on to a worker whose queue no longer exists)."""

    def reply_rerouted(self, route: str) -> None:
        """A reply for another worker was sent on: ``direct`` to its owner, or ``broadcast``."""

    def auth_event(self, event: str) -> None:
        """An auth event arrived: user_revoked, cache_flush, ignored (unknown, malformed),
        throttled (a cache_flush too soon after the last) or wrong_exchange (not
        delivered through the auth events exchange)."""

    def auth_cache(self, outcome: str) -> None:
        """The shared auth cache was asked: hit, miss, error (unreachable), or invalid
        (an entry that does not verify, oversized, future-dated or malformed)."""

    def broker_connected(self, connected: bool) -> None:
        """This worker's broker connection went up (True) or down (False)."""

    def broker_nodes(self, nodes: list[str]) -> None:
        """The broker nodes (host:port) this worker may connect to, known at start."""

    def broker_reconnected(self, node: str) -> None:
        """A broker connection was made to ``node`` (host:port) after a loss."""

    def broker_closing(self) -> None:
        """The worker is closing its broker connection on purpose (shutdown); a down follows."""

    def saturated(self, scope: str) -> None:
        """A call was refused with 503: no thread (worker), no RPC slot (rpc), agent slot
        (agent) or large-parse slot (parse) before its deadline, or the agent's breaker is
        open (breaker)."""

    def breaker_changed(self, agent_id: str, state: str, open_count: int) -> None:
        """An agent's breaker went to ``state`` (open, half_open, closed); ``open_count``
        agents of this worker are isolated now."""

    def auth_outcome(self, outcome: str) -> None:
        """An authentication ended: valid, rejected, cached, fallback, error."""

    def agents_connected(self, count: int) -> None:
        """A list-agents reply succeeded and named ``count`` distinct connected agents."""
