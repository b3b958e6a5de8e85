"""Calls whose replies were huge wait for one of a few slots; others never wait."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import pytest

from cluster_service.concurrency.large_replies import (HUGE_CALLS, HUGE_REPLY_BYTES,
                                                       LARGE_REPLY_BYTES, LargeReplies)
from cluster_service.errors import Saturated


def soon(seconds: float = 0.2) -> float:
    return time.monotonic() + seconds


def test_an_unknown_or_small_reply_never_waits() -> None:
    large = LargeReplies()
    with ExitStack() as stack:
        for n in range(HUGE_CALLS + 5):
            stack.enter_context(large.call(("agent", n), soon()))
            stack.enter_context(large.parsing(("agent", n), 10, soon()))


def test_calls_whose_last_reply_was_huge_hold_one_of_a_few_slots() -> None:
    large = LargeReplies()
    keys = [("agent", n) for n in range(HUGE_CALLS + 1)]
    for key in keys:
        with large.parsing(key, HUGE_REPLY_BYTES, soon()):
            pass
    with ExitStack() as stack:
        for key in keys[:HUGE_CALLS]:
            stack.enter_context(large.call(key, soon()))
        with pytest.raises(Saturated):
            with large.call(keys[-1], soon(0.05)):
                pass
    with large.call(keys[-1], soon()):  # released again
        pass


def test_large_replies_are_parsed_one_at_a_time() -> None:
    large = LargeReplies()
    entered = threading.Event()
    release = threading.Event()

    def parse() -> None:
        with large.parsing("a", LARGE_REPLY_BYTES, soon(5)):
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=parse)
    thread.start()
    assert entered.wait(5)
    with pytest.raises(Saturated):
        with large.parsing("b", LARGE_REPLY_BYTES, soon(0.05)):
            pass
    with large.parsing("c", LARGE_REPLY_BYTES - 1, soon(0.05)):
        pass  # a smaller reply does not wait
    release.set()
    thread.join(5)
