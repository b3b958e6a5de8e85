"""Per-agent circuit breakers: opened by timeouts in a row, never by slowness; then one trial."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from cluster_service.concurrency.breaker import Breakers, Outcome, State
from cluster_service.errors import AgentUnresponsive

from ...support.recording import RecordingObserver


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def observer() -> RecordingObserver:
    return RecordingObserver()


@pytest.fixture
def breakers(clock: FakeClock, observer: RecordingObserver) -> Breakers:
    return Breakers(threshold=3, cooldown=30, observer=observer, clock=clock)


def time_out(breakers: Breakers, key: str, times: int) -> None:
    for _ in range(times):
        trial = breakers.before_call(key)
        breakers.record(key, Outcome.TIMED_OUT, trial)


class TestClosed:
    def test_timeouts_below_the_threshold_keep_it_closed(self, breakers: Breakers) -> None:
        time_out(breakers, "a", 2)
        assert breakers.state("a") is State.CLOSED
        assert breakers.before_call("a") is False

    def test_an_answer_resets_the_count(self, breakers: Breakers) -> None:
        time_out(breakers, "a", 2)
        breakers.record("a", Outcome.ANSWERED)
        time_out(breakers, "a", 2)
        assert breakers.state("a") is State.CLOSED

    def test_slow_answers_never_open_it(self, breakers: Breakers, clock: FakeClock) -> None:
        for _ in range(50):
            breakers.before_call("a")
            clock.now += 25  # each call took 25 s, and answered
            breakers.record("a", Outcome.ANSWERED)
        assert breakers.state("a") is State.CLOSED

    def test_neutral_outcomes_say_nothing_about_the_agent(self, breakers: Breakers) -> None:
        time_out(breakers, "a", 2)
        for _ in range(10):
            breakers.record("a", Outcome.NEUTRAL)
        assert breakers.state("a") is State.CLOSED
        time_out(breakers, "a", 1)
        assert breakers.state("a") is State.OPEN

    def test_timeouts_in_a_row_count_however_far_apart(
            self, breakers: Breakers, clock: FakeClock) -> None:
        for _ in range(3):
            time_out(breakers, "a", 1)
            clock.now += 31  # each waited a whole 30 s timeout
        assert breakers.state("a") is State.OPEN

    def test_many_distinct_silent_agents_do_not_grow_the_table_for_ever(
            self, breakers: Breakers, clock: FakeClock) -> None:
        for n in range(5000):
            time_out(breakers, f"silent-{n}", 1)
            clock.now += 0.1
        assert len(breakers._circuits) <= 1024 + 3001  # forget_after's worth, plus the bound

    def test_agents_are_independent(self, breakers: Breakers) -> None:
        time_out(breakers, "hung", 3)
        assert breakers.state("hung") is State.OPEN
        assert breakers.before_call("healthy") is False


class TestOpen:
    def test_the_threshold_opens_it_and_calls_fail_fast_with_retry_after(
            self, breakers: Breakers, clock: FakeClock, observer: RecordingObserver) -> None:
        time_out(breakers, "a", 3)
        assert observer.breaker_changes == [("a", "open", 1)]
        clock.now += 10
        with pytest.raises(AgentUnresponsive) as refused:
            breakers.before_call("a")
        assert refused.value.retry_after == 20
        assert observer.saturations == {"breaker": 1}
        assert breakers.open_count == 1

    def test_waiters_are_told_to_give_up_while_it_is_open(self, breakers: Breakers) -> None:
        assert breakers.refusal("a") is None
        time_out(breakers, "a", 3)
        assert isinstance(breakers.refusal("a"), AgentUnresponsive)

    def test_on_open_is_called_so_waiters_can_be_woken(self, clock: FakeClock) -> None:
        opened: list[str] = []
        breakers = Breakers(2, 30, clock=clock, on_open=opened.append)
        time_out(breakers, "a", 2)
        assert opened == ["a"]

    def test_late_timeouts_of_calls_from_before_do_not_extend_it(
            self, breakers: Breakers, clock: FakeClock) -> None:
        time_out(breakers, "a", 3)
        clock.now += 29
        breakers.record("a", Outcome.TIMED_OUT)  # a call that was in flight when it opened
        clock.now += 1
        assert breakers.before_call("a") is True  # the cool-down still ends on time

    def test_a_late_answer_closes_it(self, breakers: Breakers,
                                     observer: RecordingObserver) -> None:
        time_out(breakers, "a", 3)
        breakers.record("a", Outcome.ANSWERED)
        assert breakers.state("a") is State.CLOSED
        assert observer.breaker_changes[-1] == ("a", "closed", 0)


class TestHalfOpen:
    def test_one_trial_after_the_cool_down_others_still_fail_fast(
            self, breakers: Breakers, clock: FakeClock, observer: RecordingObserver) -> None:
        time_out(breakers, "a", 3)
        clock.now += 30
        assert breakers.before_call("a") is True
        assert breakers.state("a") is State.HALF_OPEN
        with pytest.raises(AgentUnresponsive):
            breakers.before_call("a")
        assert observer.breaker_changes[-1] == ("a", "half_open", 1)

    def test_the_trial_answering_closes_it(self, breakers: Breakers, clock: FakeClock,
                                           observer: RecordingObserver) -> None:
        time_out(breakers, "a", 3)
        clock.now += 30
        trial = breakers.before_call("a")
        breakers.record("a", Outcome.ANSWERED, trial)
        assert breakers.state("a") is State.CLOSED
        assert breakers.before_call("a") is False
        assert observer.breaker_changes[-1] == ("a", "closed", 0)
        assert breakers.open_count == 0

    def test_the_trial_timing_out_opens_it_for_another_cool_down(
            self, breakers: Breakers, clock: FakeClock) -> None:
        time_out(breakers, "a", 3)
        clock.now += 30
        trial = breakers.before_call("a")
        clock.now += 30  # the trial waited its whole timeout
        breakers.record("a", Outcome.TIMED_OUT, trial)
        assert breakers.state("a") is State.OPEN
        clock.now += 29
        with pytest.raises(AgentUnresponsive):
            breakers.before_call("a")
        clock.now += 1
        assert breakers.before_call("a") is True

    def test_a_trial_without_verdict_lets_the_next_caller_try(
            self, breakers: Breakers, clock: FakeClock) -> None:
        time_out(breakers, "a", 3)
        clock.now += 30
        trial = breakers.before_call("a")
        breakers.record("a", Outcome.NEUTRAL, trial)  # e.g. the broker went down meanwhile
        assert breakers.before_call("a") is True


def test_reset_forgets_every_breaker_and_reports_the_open_ones_closed(
        breakers: Breakers, observer: RecordingObserver) -> None:
    time_out(breakers, "open", 3)
    time_out(breakers, "counting", 2)
    breakers.reset()
    assert breakers.open_count == 0
    assert breakers.state("open") is State.CLOSED
    time_out(breakers, "counting", 2)
    assert breakers.state("counting") is State.CLOSED
    assert observer.breaker_changes[-1] == ("open", "closed", 0)


def test_concurrent_timeouts_open_it_once_and_count_it_once(clock: FakeClock) -> None:
    observer = RecordingObserver()
    breakers = Breakers(3, 30, observer=observer, clock=clock)
    start = threading.Barrier(32)

    def call() -> None:
        trial = breakers.before_call("a")
        start.wait(5)
        breakers.record("a", Outcome.TIMED_OUT, trial)

    with ThreadPoolExecutor(32) as pool:
        for future in [pool.submit(call) for _ in range(32)]:
            future.result(5)
    assert observer.breaker_changes == [("a", "open", 1)]
    assert breakers.open_count == 1
