"""The spread table's rules (cluster_service/server/spread.py), with explicit clocks."""

from __future__ import annotations

from cluster_service.server.spread import SLACK, SLACK_SHARE, STALE_AFTER_S, SpreadTable


def test_only_workers_near_the_least_loaded_accept() -> None:
    table = SpreadTable(rows=8)
    a, b = table.reserve(now=0.0), table.reserve(now=0.0)
    assert (a, b) == (0, 1)
    table.report(a, 2 + SLACK + 1, now=1.0)
    table.report(b, 2, now=1.0)
    assert not table.may_accept(a, 2 + SLACK + 1, now=1.0)
    assert table.may_accept(b, 2, now=1.0)
    assert table.may_accept(a, 2 + SLACK, now=1.0)  # within the slack
    table.report(b, 3, now=1.1)
    assert table.may_accept(a, 3, now=1.1) and table.may_accept(b, 3, now=1.1)  # a tie: both


def test_the_slack_grows_with_the_least_count() -> None:
    table = SpreadTable(rows=8)
    a, b = table.reserve(now=0.0), table.reserve(now=0.0)
    least = 20 * SLACK_SHARE
    table.report(b, least, now=1.0)
    assert table.may_accept(a, least + 20, now=1.0)  # a twentieth more weighs nothing
    assert not table.may_accept(a, least + 21, now=1.0)
    table.report(b, SLACK_SHARE - 1, now=2.0)  # few connections: one more at most
    assert not table.may_accept(a, SLACK_SHARE + SLACK, now=2.0)


def test_a_silent_or_freed_row_never_stops_the_others() -> None:
    table = SpreadTable(rows=8)
    a, b = table.reserve(now=0.0), table.reserve(now=0.0)
    table.report(a, 5, now=10.0)
    table.report(b, 0, now=10.0)
    assert not table.may_accept(a, 5, now=10.0)
    assert table.may_accept(a, 5, now=10.0 + STALE_AFTER_S + 0.1)  # b's heartbeat is stale
    table.report(b, 0, now=20.0)
    table.release(b)
    assert table.may_accept(a, 5, now=20.0)  # a reserved or freed row counts for nothing


def test_rows_are_reused_once_their_worker_is_gone() -> None:
    table = SpreadTable(rows=2)
    a, b = table.reserve(now=0.0), table.reserve(now=0.0)
    assert table.reserve(now=1.0) is None  # full: both reserved for forks in progress
    table.report(a, 1)  # our own, living pid
    table.release(b)
    assert table.reserve(now=2.0) == b
    assert table.reserve(now=2.0 + 61) == b  # a reservation never reported expires
    assert table.reserve(now=100.0) is None  # row a: a live worker (this process)
