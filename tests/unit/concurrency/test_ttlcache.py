"""TtlCache: time to live, size bound, and 0 = off."""

from __future__ import annotations

from cluster_service.concurrency.ttlcache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_value_lives_for_the_ttl() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(30, clock=clock)
    cache.put("k", "v")
    clock.now += 29.9
    assert cache.get("k") == "v"
    clock.now += 0.1
    assert cache.get("k") is None
    assert len(cache) == 0


def test_put_again_renews_the_ttl() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(10, clock=clock)
    cache.put("k", "old")
    clock.now += 8
    cache.put("k", "new")
    clock.now += 8
    assert cache.get("k") == "new"


def test_ttl_zero_disables_the_cache() -> None:
    cache: TtlCache[str] = TtlCache(0)
    cache.put("k", "v")
    assert cache.get("k") is None
    assert len(cache) == 0


def test_oldest_entries_go_first_past_the_size_bound() -> None:
    cache: TtlCache[int] = TtlCache(60, max_size=3)
    for n in range(5):
        cache.put(n, n)
    assert len(cache) == 3
    assert [cache.get(n) for n in range(5)] == [None, None, 2, 3, 4]


def test_clear_forgets_everything() -> None:
    cache: TtlCache[int] = TtlCache(60)
    cache.put("a", 1)
    cache.clear()
    assert cache.get("a") is None


def test_a_shorter_ttl_per_entry_but_never_a_longer_one() -> None:
    clock = Clock()
    cache: TtlCache[str] = TtlCache(10, clock=clock)
    cache.put("short", "v", ttl=2)
    cache.put("long", "v", ttl=100)
    cache.put("gone", "v", ttl=0)
    clock.now += 3
    assert cache.get("short") is None and cache.get("gone") is None
    assert cache.get("long") == "v"
    clock.now += 8
    assert cache.get("long") is None


def test_discard_if_forgets_only_the_matching_values() -> None:
    cache: TtlCache[int] = TtlCache(60)
    for n in range(6):
        cache.put(n, n % 2)
    assert cache.discard_if(lambda value: value == 1) == 3
    assert [cache.get(n) for n in range(6)] == [0, None, 0, None, 0, None]
