"""Timestamps in the contract's one format."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``: ``2024-01-01T12:00:00.000Z``."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
