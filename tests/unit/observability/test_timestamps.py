"""The contract's timestamp, whatever second was formatted before."""

from __future__ import annotations

import time
from datetime import datetime, timezone

from hypothesis import given, strategies as st

from cluster_service.observability.timestamps import utc_timestamp


def formatted(seconds: float) -> str:
    whole = int(seconds)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
            + f".{int((seconds - whole) * 1000):03d}Z")


@given(st.lists(st.floats(min_value=0, max_value=4e9), min_size=1, max_size=20))
def test_any_sequence_of_moments_formats_each_as_strftime_would(moments: list[float]) -> None:
    for moment in moments:
        assert utc_timestamp(moment) == formatted(moment)


def test_a_datetime_and_now() -> None:
    moment = datetime(2026, 12, 3, 7, 28, 41, 123456, tzinfo=timezone.utc)
    assert utc_timestamp(moment) == "2026-12-03T07:28:41.123Z"
    before = time.time()
    now = utc_timestamp()
    assert formatted(before)[:17] <= now[:17]  # same minute or later
