"""Observers beyond the metrics: RPC and broker events as log lines, and fan-out to several.

``LoggingObserver`` writes one line per finished RPC (queue, outcome, duration;
at DEBUG when it succeeded, WARNING otherwise) and one per change of the broker
connection. A close at shutdown is no failure: the transport's INFO
``broker_closed`` line records it, and no WARNING follows. ``RpcClient.call``
reports an RPC's end from the request thread, so the logging filter stamps the
line with the HTTP request's id: the access line and its RPC lines share
``request_id``.
Nothing here sees a message body or an API key.
"""

from __future__ import annotations

import logging
import threading

from .observer import Observer


class LoggingObserver(Observer):
    """Logs RPC outcomes (DEBUG when ok, WARNING otherwise), breaker and broker transitions."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("cluster_service.rpc")
        self._lock = threading.Lock()
        self._connected: bool | None = None
        self._closing = False

    def rpc_finished(self, queue: str, outcome: str, seconds: float) -> None:
        # A successful RPC is at DEBUG: at INFO it doubles the log volume (one line
        # per RPC beside the access line) and costs a worker about 5% of its CPU.
        level = logging.DEBUG if outcome == "ok" else logging.WARNING
        if not self._log.isEnabledFor(level):
            return
        self._log.log(level, "rpc %s", outcome, extra={
            "event": "rpc", "queue": queue, "outcome": outcome,
            "duration_ms": round(seconds * 1000, 2)})

    def breaker_changed(self, agent_id: str, state: str, open_count: int) -> None:
        level = logging.WARNING if state == "open" else logging.INFO
        self._log.log(level, "agent breaker %s", state, extra={
            "event": "agent_breaker", "agent_id": agent_id, "state": state,
            "open_breakers": open_count})

    def broker_connected(self, connected: bool) -> None:
        # The transport reports every attempt; only a change of state is worth a line.
        with self._lock:
            changed, self._connected = connected != self._connected, connected
        if not changed or self._closing:
            return
        if connected:
            self._log.info("broker connection up", extra={"event": "broker_state",
                                                          "connected": True})
        else:
            self._log.warning("broker connection down", extra={"event": "broker_state",
                                                               "connected": False})

    def broker_closing(self) -> None:
        self._closing = True


class CompositeObserver(Observer):
    """Hands every event to each of several observers, in order."""

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def rpc_published(self, queue: str) -> None:
        for observer in self.observers:
            observer.rpc_published(queue)

    def rpc_finished(self, queue: str, outcome: str, seconds: float) -> None:
        for observer in self.observers:
            observer.rpc_finished(queue, outcome, seconds)

    def operation_finished(self, operation: str, outcome: str, seconds: float) -> None:
        for observer in self.observers:
            observer.operation_finished(operation, outcome, seconds)

    def rpc_inflight(self, delta: int) -> None:
        for observer in self.observers:
            observer.rpc_inflight(delta)

    def reply_received(self, via: str) -> None:
        for observer in self.observers:
            observer.reply_received(via)

    def reply_dropped(self, reason: str) -> None:
        for observer in self.observers:
            observer.reply_dropped(reason)

    def reply_rerouted(self, route: str) -> None:
        for observer in self.observers:
            observer.reply_rerouted(route)

    def auth_event(self, event: str) -> None:
        for observer in self.observers:
            observer.auth_event(event)

    def auth_cache(self, outcome: str) -> None:
        for observer in self.observers:
            observer.auth_cache(outcome)

    def broker_connected(self, connected: bool) -> None:
        for observer in self.observers:
            observer.broker_connected(connected)

    def broker_closing(self) -> None:
        for observer in self.observers:
            observer.broker_closing()

    def broker_nodes(self, nodes: list[str]) -> None:
        for observer in self.observers:
            observer.broker_nodes(nodes)

    def broker_reconnected(self, node: str) -> None:
        for observer in self.observers:
            observer.broker_reconnected(node)

    def auth_outcome(self, outcome: str) -> None:
        for observer in self.observers:
            observer.auth_outcome(outcome)

    def saturated(self, scope: str) -> None:
        for observer in self.observers:
            observer.saturated(scope)

    def agents_connected(self, count: int) -> None:
        for observer in self.observers:
            observer.agents_connected(count)

    def breaker_changed(self, agent_id: str, state: str, open_count: int) -> None:
        for observer in self.observers:
            observer.breaker_changed(agent_id, state, open_count)
