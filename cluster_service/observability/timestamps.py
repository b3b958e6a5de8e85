"""Timestamps in the contract's one format."""

from __future__ import annotations

import time
from datetime import datetime

# The last whole second formatted, and its text: nearly every request and log line
# asks within the same second as the one before, and ``strftime`` is most of the cost.
# One tuple, replaced whole, so a thread never reads a second with another's text.
_last: tuple[int, str] = (-1, "")


def utc_timestamp(moment: datetime | float | None = None) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``: ``2024-01-01T12:00:00.000Z``.

    ``moment`` is a datetime, Unix epoch seconds (a log record's ``created``), or now.
    """
    global _last
    if moment is None:
        seconds = time.time()
    elif isinstance(moment, datetime):
        seconds = moment.timestamp()
    else:
        seconds = moment
    whole = int(seconds)
    millis = int((seconds - whole) * 1000)
    last = _last
    if last[0] != whole:
        last = _last = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{last[1]}.{millis:03d}Z"
