"""The outbox wakes the I/O thread once per batch, and never loses or reorders an item."""

from __future__ import annotations

import pytest

from cluster_service.rpc.outbox import Outbox


def test_only_the_first_item_of_a_batch_wakes_the_io_thread() -> None:
    outbox: Outbox[int] = Outbox()
    wakes: list[int] = []
    for i in range(10):
        outbox.put(i, lambda: wakes.append(1))
    assert len(wakes) == 1
    assert outbox.take() == list(range(10))
    outbox.put(10, lambda: wakes.append(1))  # taken: the next item wakes it again
    assert len(wakes) == 2 and outbox.take() == [10]
    assert outbox.take() == []


def test_a_wake_up_that_fails_takes_its_item_back_and_the_next_put_tries_again() -> None:
    outbox: Outbox[str] = Outbox()

    def broken() -> None:
        raise ConnectionError("closed")

    with pytest.raises(ConnectionError):
        outbox.put("lost", broken)
    wakes: list[int] = []
    outbox.put("next", lambda: wakes.append(1))
    assert wakes == [1] and outbox.take() == ["next"]
