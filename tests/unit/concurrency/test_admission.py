"""Admission: a slot is waited for until the caller's own deadline, or until it should give up."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster_service.concurrency.admission import KeyedSlots, Slots
from cluster_service.errors import AgentUnresponsive, Saturated

from ...support.recording import RecordingObserver
from ...support.service import wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TestSlots:
    def test_a_waiter_gets_the_slot_when_it_frees_long_after_100_ms(self) -> None:
        slots = Slots(1)
        slots.acquire(time.monotonic() + 5)
        got = threading.Event()

        def waiter() -> None:
            slots.acquire(time.monotonic() + 5)
            got.set()

        thread = threading.Thread(target=waiter)
        thread.start()
        assert not got.wait(0.6)  # a healthy but slow holder: the waiter stays in line
        slots.release()
        assert got.wait(2)
        thread.join(2)
        slots.release()
        assert slots.held == 0

    def test_a_waiter_whose_deadline_passes_is_saturated_and_reported(self) -> None:
        clock, observer = FakeClock(), RecordingObserver()
        slots = Slots(1, observer, scope="agent", clock=clock)
        slots.acquire(clock.now + 30)
        with pytest.raises(Saturated):
            slots.acquire(clock.now)  # deadline already reached: no wait at all
        assert observer.saturations == {"agent": 1}
        assert slots.held == 1

    def test_give_up_ends_the_wait_with_its_error_when_woken(self) -> None:
        slots = Slots(1)
        slots.acquire(time.monotonic() + 5)
        reason: list[AgentUnresponsive] = []
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(slots.acquire, time.monotonic() + 30,
                                 lambda: reason[0] if reason else None)
            wait_for(lambda: slots.waiting == 1, 2, what="the caller in line")
            assert not future.done()
            reason.append(AgentUnresponsive("agent-1", 7))
            started = time.monotonic()
            slots.wake_all()
            with pytest.raises(AgentUnresponsive):
                future.result(2)
            assert time.monotonic() - started < 0.2
        assert slots.held == 1

    def test_no_slot_is_lost_under_contention(self) -> None:
        slots = Slots(3)
        inside = []
        lock = threading.Lock()

        def work() -> None:
            slots.acquire(time.monotonic() + 10)
            try:
                with lock:
                    inside.append(slots.held)
            finally:
                slots.release()

        with ThreadPoolExecutor(16) as pool:
            for future in [pool.submit(work) for _ in range(400)]:
                future.result(10)
        assert max(inside) <= 3
        assert slots.held == 0


class TestKeyedSlots:
    def test_keys_are_independent_and_forgotten_when_idle(self) -> None:
        keyed: KeyedSlots[str] = KeyedSlots(1, clock=FakeClock())
        with keyed.held("a", 2000.0):
            with keyed.held("b", 2000.0):
                assert len(keyed) == 2
            with pytest.raises(Saturated):
                with keyed.held("a", 0.0):
                    pass  # pragma: no cover
            assert len(keyed) == 1
        assert len(keyed) == 0

    def test_wake_all_reaches_the_waiters_of_that_key(self) -> None:
        keyed: KeyedSlots[str] = KeyedSlots(1)
        refuse = threading.Event()

        def give_up() -> AgentUnresponsive | None:
            return AgentUnresponsive("a", 3) if refuse.is_set() else None

        with keyed.held("a", time.monotonic() + 5):
            with ThreadPoolExecutor(1) as pool:
                def wait_in_line() -> None:
                    with keyed.held("a", time.monotonic() + 30, give_up):
                        pass  # pragma: no cover

                future = pool.submit(wait_in_line)
                wait_for(lambda: keyed._slots["a"][0].waiting == 1, 2, what="the waiter in line")
                refuse.set()
                keyed.wake_all("a")
                with pytest.raises(AgentUnresponsive):
                    future.result(1)
        assert len(keyed) == 0
