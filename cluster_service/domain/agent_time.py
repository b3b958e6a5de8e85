"""An agent's ``age`` (a Go ``time.Time``, RFC 3339 with any offset) as the API's UTC timestamp.

The Go agent marshals creation times with ``time.RFC3339Nano``: nanosecond
fractions and the cluster's own offset (``2024-03-01T17:30:00.123456789+05:30``).
The API speaks one format, UTC with milliseconds and ``Z``
(``observability.timestamps``). A list of thousands of items repeats the same
few ages across requests, so conversions are memoised.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from functools import lru_cache

_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})")


@lru_cache(maxsize=65536)
def utc_created_at(age: str) -> str:
    """``age`` in UTC as ``YYYY-MM-DDTHH:MM:SS.mmmZ``; ValueError if it is not RFC 3339."""
    if not _RFC3339.fullmatch(age):
        raise ValueError("not an RFC 3339 time")
    text = age.upper()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text).astimezone(timezone.utc)
    except OverflowError:  # year 1 with a positive offset: before the calendar starts
        raise ValueError("time out of range") from None
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:"
            f"{moment.minute:02d}:{moment.second:02d}.{moment.microsecond // 1000:03d}Z")
