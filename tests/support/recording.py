"""An Observer that remembers what it was told, for unit tests of the RPC and auth layers."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Callable

from cluster_service.observability.observer import Observer


class RecordingObserver(Observer):
    """Counts every event; ``dropped[reason]``, ``outcomes[(queue, outcome)]`` and so on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.published: Counter[str] = Counter()
        self.outcomes: Counter[tuple[str, str]] = Counter()
        self.dropped: Counter[str] = Counter()
        self.auth: Counter[str] = Counter()
        self.rerouted = 0
        self.routes: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.shared_cache: Counter[str] = Counter()
        self.inflight = 0
        self.connected: list[bool] = []
        self.closing = 0
        self.agents: list[int] = []

        self.saturations: Counter[str] = Counter()
        self.breaker_changes: list[tuple[str, str, int]] = []

    def rpc_published(self, queue: str) -> None:
        with self._lock:
            self.published[queue] += 1

    def rpc_finished(self, queue: str, outcome: str, seconds: float) -> None:
        with self._lock:
            self.outcomes[(queue, outcome)] += 1

    def rpc_inflight(self, delta: int) -> None:
        with self._lock:
            self.inflight += delta

    def reply_dropped(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1

    def reply_rerouted(self, route: str) -> None:
        with self._lock:
            self.rerouted += 1
            self.routes[route] += 1

    def reply_received(self, via: str) -> None:
        with self._lock:
            self.received[via] += 1

    def auth_event(self, event: str) -> None:
        with self._lock:
            self.events[event] += 1

    def auth_cache(self, outcome: str) -> None:
        with self._lock:
            self.shared_cache[outcome] += 1

    def broker_connected(self, connected: bool) -> None:
        with self._lock:
            self.connected.append(connected)

    def auth_outcome(self, outcome: str) -> None:
        with self._lock:
            self.auth[outcome] += 1

    def broker_closing(self) -> None:
        with self._lock:
            self.closing += 1

    def agents_connected(self, count: int) -> None:
        with self._lock:
            self.agents.append(count)

    def saturated(self, scope: str) -> None:
        with self._lock:
            self.saturations[scope] += 1

    def breaker_changed(self, agent_id: str, state: str, open_count: int) -> None:
        with self._lock:
            self.breaker_changes.append((agent_id, state, open_count))


class EventLog(Observer):
    """Every event in the order it came, as ``(method name, *arguments)``."""

    def __init__(self) -> None:
        self.events: list[tuple[object, ...]] = []


def _recorder(name: str) -> Callable[..., None]:
    def record(self: EventLog, *args: object) -> None:
        self.events.append((name, *args))
    return record


for _name in [name for name in vars(Observer) if not name.startswith("_")]:
    setattr(EventLog, _name, _recorder(_name))
