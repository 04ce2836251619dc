"""Time helpers shared by the delivery controls.

Local wall-clock times become instants by one rule everywhere: the one of Python's
`fold=0` and of java.time's `ZonedDateTime.of`. A time that does not exist because the
clock jumps forward is moved later by the length of the jump (02:30 on 2024-03-10 in
America/New_York is 03:30 EDT). A time that occurs twice because the clock falls back
takes the earlier occurrence (01:30 on 2024-11-03 in America/New_York is 01:30 EDT).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["epoch_seconds", "local_day_start", "local_instant", "resolve_zone"]

_MIDNIGHT = time(0)


def epoch_seconds(at: datetime) -> int:
    """Return whole seconds since the UTC epoch, rounded down."""
    return int(at.timestamp() // 1)


def local_instant(day: date, wall_time: time, zone: ZoneInfo) -> datetime:
    """Return the UTC instant of a wall-clock time in `zone`, by the module's rule."""
    return datetime.combine(day, wall_time, zone).astimezone(UTC)


def local_day_start(at: datetime, zone: ZoneInfo, days_back: int = 0) -> datetime:
    """Return the first instant of the local calendar day `days_back` days before `at`'s.

    Where a zone skips midnight (its clock jumps from 23:59 to 01:00), the rule for
    missing times yields 01:00, which is the first instant of that day.
    """
    day = at.astimezone(zone).date() - timedelta(days=days_back)
    return local_instant(day, _MIDNIGHT, zone)


def resolve_zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    """Return the zone named `name`, or `fallback` when it is missing or not an IANA name."""
    if not name:
        return fallback
    return _zone_or_none(name) or fallback


@lru_cache(maxsize=1024)
def _zone_or_none(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
