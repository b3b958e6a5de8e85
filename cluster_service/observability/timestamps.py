"""Timestamps in the contract's one format."""

from __future__ import annotations

import time
from datetime import datetime


def utc_timestamp(moment: datetime | float | None = None) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``: ``2024-01-01T12:00:00.000Z``.

    ``moment`` is a datetime, Unix epoch seconds (a log record's ``created``), or now.
    """
    if moment is None:
        seconds = time.time()
    elif isinstance(moment, datetime):
        seconds = moment.timestamp()
    else:
        seconds = moment
    whole = int(seconds)
    millis = int((seconds - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"
