"""Timestamps as BC and our tables write them: tz-aware UTC datetimes, ISO 8601 text with `Z`.

`iso` is the storage form (microseconds, sorts as text so table filters can compare it); `bc_datetime`
is the literal of a BC `$filter` (milliseconds, rounded down so a `gt` filter never skips a change).
"""
from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds and `Z` (sorts as text, so tables can filter on it)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(value: str) -> datetime:
    """A tz-aware datetime from ISO 8601 (`Z` or an offset; naive is taken as UTC)."""
    moment = datetime.fromisoformat(value.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def bc_datetime(moment: datetime) -> str:
    """A BC filter literal: UTC, milliseconds (rounded down), `Z`."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
