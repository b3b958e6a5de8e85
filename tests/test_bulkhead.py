"""Bulkhead: a busy service keeps serving, a stuck one says Saturated."""

from __future__ import annotations

import threading
import time

import pytest

from cluster_service.bulkhead import Bulkhead, KeyedBulkhead
from cluster_service.exceptions import Saturated


def test_acquire_within_the_limit_is_immediate() -> None:
    head = Bulkhead(2, 0.05, 1)
    first, second = head.acquire(), head.acquire()
    assert head.held == 2
    head.release(first)
    head.release(second)
    assert head.held == 0


def test_stuck_holders_make_a_waiter_saturated_after_one_window() -> None:
    head = Bulkhead(1, 0.1, 5, stuck_after=0.3)
    head.acquire()
    started = time.monotonic()
    with pytest.raises(Saturated):
        head.acquire()  # the holder is young: wait until it has been held 0.3 s
    assert 0.3 <= time.monotonic() - started < 2.0
    started = time.monotonic()
    with pytest.raises(Saturated):
        head.acquire()  # now the holder is old: give up after one 0.1 s window
    assert 0.1 <= time.monotonic() - started < 0.3
    assert head.held == 1


def test_young_holders_are_waited_for_up_to_max_wait() -> None:
    head = Bulkhead(1, 0.05, 0.4, stuck_after=10)
    head.acquire()
    started = time.monotonic()
    with pytest.raises(Saturated):
        head.acquire()
    assert 0.4 <= time.monotonic() - started < 2.0


def test_a_waiter_gets_a_slot_that_turns_over() -> None:
    head = Bulkhead(1, 2.0, 5)
    token = head.acquire()
    timer = threading.Timer(0.05, head.release, (token,))
    timer.start()
    head.acquire()
    assert head.held == 1
    timer.join()


def test_a_burst_larger_than_the_limit_is_served_while_slots_turn_over() -> None:
    head = Bulkhead(2, 0.2, 5)
    errors: list[BaseException] = []

    def short_job() -> None:
        try:
            with head:
                time.sleep(0.01)  # simulated work, not a wait for a condition
        except Saturated as error:
            errors.append(error)

    threads = [threading.Thread(target=short_job) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    assert head.held == 0


def test_keyed_bulkhead_isolates_keys_and_forgets_idle_ones() -> None:
    heads = KeyedBulkhead(1, 0.05, 1, stuck_after=0)
    token_a = heads.acquire("agent-a")
    token_b = heads.acquire("agent-b")  # another agent is not blocked by a stuck one
    with pytest.raises(Saturated):
        heads.acquire("agent-a")
    assert len(heads) == 2
    heads.release("agent-a", token_a)
    heads.release("agent-b", token_b)
    assert len(heads) == 0
