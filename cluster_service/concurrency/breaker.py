"""Per-agent circuit breakers: isolate the agents whose calls time out, and only those.

A slow agent answers; a hung one does not. So the breaker listens to outcomes,
never to how long a call has been running:

* **closed** (the normal state): calls go through. ``threshold`` timeouts in a
  row (no answer within ``WEBSOCKET_TIMEOUT``, or the Onboarding Service saying
  the agent timed out) open it. Any answer, even an error, resets the count:
  an agent that says "forbidden" quickly is alive.
* **open**: calls fail at once with :class:`AgentUnresponsive` (503 with
  ``Retry-After``) for ``cooldown`` seconds, so a hung agent holds no threads.
* **half-open**: after the cool-down one trial call goes through while the
  others keep failing fast; its answer closes the breaker, its timeout opens
  it again for another cool-down.

pybreaker was considered and not used: its ``call`` holds one lock for the
whole guarded call, which would let only one request at a time reach an
agent, and it reads the wall clock, which the tests need to replace.

State is per worker process (each worker learns on its own, within
``threshold`` timeouts); entries exist only for agents with recent timeouts.
Closed entries whose last timeout is older than ``forget_after`` are swept
once there are many of them, so distinct silent agents cannot grow the table
for ever.
"""

from __future__ import annotations

import enum
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

from ..errors import AgentUnresponsive
from ..observability.observer import Observer


class State(str, enum.Enum):
    """A breaker's state, as logged and counted."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(enum.Enum):
    """How a guarded call ended, as far as the agent's health is concerned."""

    ANSWERED = "answered"  # any reply: the agent is alive
    TIMED_OUT = "timed_out"  # no reply in time: counts towards opening
    NEUTRAL = "neutral"  # broker down, no slot, cancelled: says nothing about the agent


_SWEEP_ABOVE = 1024  # entries; sweeping costs one pass over them


@dataclass
class _Circuit:
    failures: int = 0
    last_failure: float = 0.0
    opened_at: float | None = None  # set while open or half-open
    trial_running: bool = False  # half-open: the one trial call is in flight

    @property
    def state(self) -> State:
        if self.opened_at is None:
            return State.CLOSED
        return State.HALF_OPEN if self.trial_running else State.OPEN


class Breakers:
    """The breakers of one worker, one per key (agent id), created on first timeout.

    Every change of state goes to ``observer.breaker_changed`` (and, when a breaker
    opens, to ``on_open``: the caller wakes the calls waiting in line for that
    agent); every call refused because of an open breaker to
    ``observer.saturated("breaker")``.
    """

    def __init__(self, threshold: int, cooldown: float, observer: Observer | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_open: Callable[[str], None] | None = None,
                 forget_after: float | None = None) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.forget_after = 10 * cooldown if forget_after is None else forget_after
        self._observer = observer or Observer()
        self._clock = clock
        self._on_open = on_open or (lambda key: None)
        self._lock = threading.Lock()
        self._circuits: dict[str, _Circuit] = {}

    @property
    def open_count(self) -> int:
        """How many agents are isolated now (open or half-open)."""
        return sum(1 for c in self._circuits.values() if c.opened_at is not None)

    def state(self, key: str) -> State:
        """The breaker's state for ``key``."""
        circuit = self._circuits.get(key)
        return State.CLOSED if circuit is None else circuit.state

    def before_call(self, key: str) -> bool:
        """Let a call through or raise :class:`AgentUnresponsive`.

        Returns True when the call is the half-open trial; pass that to :meth:`record`.
        """
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is None or circuit.opened_at is None:
                return False
            waited = self._clock() - circuit.opened_at
            refused = circuit.trial_running or waited < self.cooldown
            if not refused:
                circuit.trial_running = True
                changed = self._change(key, State.HALF_OPEN)
        if refused:
            self._observer.saturated("breaker")
            raise AgentUnresponsive(key, self._retry_after(waited))
        self._notify(changed)
        return True

    def refusal(self, key: str) -> AgentUnresponsive | None:
        """The error a caller waiting for ``key`` should give up with now, if any."""
        circuit = self._circuits.get(key)
        opened_at = circuit.opened_at if circuit is not None else None
        if opened_at is None:
            return None
        self._observer.saturated("breaker")
        return AgentUnresponsive(key, self._retry_after(self._clock() - opened_at))

    def record(self, key: str, outcome: Outcome, trial: bool = False) -> None:
        """Report how a call to ``key`` that :meth:`before_call` let through ended."""
        changed = None
        with self._lock:
            circuit = self._circuits.get(key)
            if outcome is Outcome.ANSWERED:
                if circuit is not None:
                    del self._circuits[key]
                    if circuit.opened_at is not None:
                        changed = self._change(key, State.CLOSED)
            elif outcome is Outcome.TIMED_OUT:
                changed = self._timed_out(key, circuit, trial)
            elif trial and circuit is not None:
                circuit.trial_running = False  # no verdict: the next caller may try
        self._notify(changed)

    def reset(self) -> None:
        """Forget every breaker: their timeouts may have been the broker's, not the agents'.

        Called when the broker connection comes back: calls that timed out over a
        silently dead connection prove nothing about the agents behind it.
        """
        with self._lock:
            isolated = [key for key, c in self._circuits.items() if c.opened_at is not None]
            self._circuits.clear()
        for key in isolated:
            self._observer.breaker_changed(key, State.CLOSED.value, 0)

    def _timed_out(self, key: str, circuit: _Circuit | None,
                   trial: bool) -> tuple[str, State, int] | None:
        now = self._clock()
        if circuit is None:
            if len(self._circuits) >= _SWEEP_ABOVE:
                self._sweep(now)
            circuit = self._circuits[key] = _Circuit()
        if circuit.opened_at is not None:
            if not trial:  # a call from before the breaker opened: already counted
                return None
            circuit.trial_running = False
            circuit.opened_at = now
            return self._change(key, State.OPEN)
        circuit.failures += 1
        circuit.last_failure = now
        if circuit.failures < self.threshold:
            return None
        circuit.opened_at = now
        return self._change(key, State.OPEN)

    def _sweep(self, now: float) -> None:
        stale = [key for key, c in self._circuits.items()
                 if c.opened_at is None and now - c.last_failure > self.forget_after]
        for key in stale:
            del self._circuits[key]

    def _change(self, key: str, state: State) -> tuple[str, State, int]:
        return key, state, self.open_count

    def _notify(self, changed: tuple[str, State, int] | None) -> None:
        if changed is None:  # called outside the lock: observers log and count
            return
        key, state, open_count = changed
        self._observer.breaker_changed(key, state.value, open_count)
        if state is State.OPEN:
            self._on_open(key)

    def _retry_after(self, waited: float) -> int:
        return max(1, math.ceil(self.cooldown - waited))
