"""SingleFlight: concurrent identical calls share one execution; nothing is cached."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Hashable

import pytest

from cluster_service.errors import RpcTimeout
from cluster_service.concurrency.singleflight import Shared, SingleFlight

from ...support.service import wait_for


def followers(flights: SingleFlight[Any], key: Hashable) -> int:
    """How many callers wait on ``key``'s flight now (peeks at the flight's Event)."""
    flight = flights._flights.get(key)
    return len(flight.done._cond._waiters) if flight is not None else 0  # type: ignore


def test_concurrent_callers_share_one_execution() -> None:
    flights: SingleFlight[int] = SingleFlight()
    release = threading.Event()
    runs = []

    def work() -> int:
        runs.append(1)
        release.wait(5)
        return 42

    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(flights.do, "key", work, 5) for _ in range(20)]
        wait_for(lambda: followers(flights, "key") == 19, 5, what="19 followers")
        release.set()
        results = [f.result(5) for f in futures]
    assert runs == [1]
    assert {value for value, _ in results} == {42}
    assert sorted(shared for _, shared in results) == [False] + [True] * 19
    assert len(flights) == 0


def test_the_leaders_error_reaches_every_follower() -> None:
    flights: SingleFlight[int] = SingleFlight()
    release = threading.Event()

    def work() -> int:
        release.wait(5)
        raise ValueError("boom")

    with ThreadPoolExecutor(max_workers=5) as pool:
        futures = [pool.submit(flights.do, "key", work, 5) for _ in range(5)]
        wait_for(lambda: len(flights) == 1, 2, what="the flight")
        release.set()
        for future in futures:
            with pytest.raises(ValueError):
                future.result(5)
    assert len(flights) == 0


def test_nothing_is_cached_after_the_flight() -> None:
    flights: SingleFlight[int] = SingleFlight()
    counter = iter(range(10))
    assert flights.do("key", lambda: next(counter), 1) == (0, False)
    assert flights.do("key", lambda: next(counter), 1) == (1, False)


def test_different_keys_do_not_share() -> None:
    flights: SingleFlight[str] = SingleFlight()
    release = threading.Event()

    def work(key: str) -> str:
        release.wait(5)
        return key

    with ThreadPoolExecutor(max_workers=2) as pool:
        a = pool.submit(flights.do, "a", lambda: work("a"), 5)
        b = pool.submit(flights.do, "b", lambda: work("b"), 5)
        wait_for(lambda: len(flights) == 2, 2, what="two flights")
        release.set()
        assert a.result(5) == ("a", False)
        assert b.result(5) == ("b", False)


def test_a_follower_gives_up_after_its_own_timeout() -> None:
    flights: SingleFlight[int] = SingleFlight()
    release = threading.Event()
    with ThreadPoolExecutor(max_workers=1) as pool:
        leader = pool.submit(flights.do, "key", lambda: release.wait(5) and 1, 5)
        wait_for(lambda: len(flights) == 1, 2, what="the flight")
        with pytest.raises(RpcTimeout):
            flights.do("key", lambda: 2, 0.05)
        release.set()
        assert leader.result(5) == (1, False)


class TestShared:
    def test_each_key_is_built_once_for_every_caller(self) -> None:
        shared = Shared([1, 2, 3])
        builds: list[str] = []
        start = threading.Barrier(8)

        def derive(key: str) -> object:
            start.wait(5)
            return shared.derive(key, lambda value: builds.append(key) or (key, sum(value)))

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(derive, ["a"] * 4 + ["b"] * 4))
        assert sorted(builds) == ["a", "b"]
        assert results[0] is results[1] is results[2] is results[3]
        assert results[4] == ("b", 6) and results[4] is results[7]

    def test_a_build_that_raises_is_not_kept(self) -> None:
        shared = Shared(0)
        with pytest.raises(ZeroDivisionError):
            shared.derive("k", lambda value: 1 / value)
        assert shared.derive("k", lambda value: value + 1) == 1
