"""Keep a counted sequence of requests inside one rate-limit window.

The limiter's sliding-window-counter strategy (``cluster_service/api/limiter.py``)
counts per minute aligned to the epoch and weights the previous minute by the
time left in it. A burst that straddles a minute boundary can therefore get one
request more (the previous count, weighted, is rounded down). Tests that assert
"exactly L succeed" call :func:`fresh_window` first, so the sequence runs within
one minute. With the moving-window strategy it costs nothing and changes nothing.
"""

from __future__ import annotations

import time

from .service import wait_for

WINDOW = 60.0


def seconds_left_in_window(window: float = WINDOW) -> float:
    return window - time.time() % window


def fresh_window(needed: float, window: float = WINDOW) -> None:
    """Return once at least ``needed`` seconds remain before the next window boundary."""
    if seconds_left_in_window(window) < needed:
        wait_for(lambda: seconds_left_in_window(window) >= needed, timeout=needed + 2,
                 what="the next rate-limit window")
