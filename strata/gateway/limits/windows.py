"""Fixed UTC windows: the minute, the day and the calendar month a moment falls in.

A window is numbered by how many whole windows lie between the Unix epoch and it, so the
number alone names it (in Redis keys, in a reservation) and a new number means a fresh count.
Times are Unix epoch seconds, which have no leap seconds: every UTC day is 86,400 of them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

MINUTE_S = 60
DAY_S = 86_400
_EPOCH = date(1970, 1, 1)


class Window(NamedTuple):
    """One fixed window: its number and when the next one starts (epoch seconds)."""

    number: int
    resets_at: float


def minute(now: float) -> Window:
    """The UTC minute holding `now`."""
    number = int(now // MINUTE_S)
    return Window(number, float((number + 1) * MINUTE_S))


def day(now: float) -> Window:
    """The UTC day holding `now`."""
    number = int(now // DAY_S)
    return Window(number, float((number + 1) * DAY_S))


def month(now: float) -> Window:
    """The UTC calendar month holding `now`, numbered `year * 12 + month - 1`."""
    return _month_of_day(int(now // DAY_S))


@lru_cache(maxsize=8)
def _month_of_day(day_number: int) -> Window:
    # Cached per day: the calendar arithmetic runs once a day, not once a request.
    today = _EPOCH + timedelta(days=day_number)
    number = today.year * 12 + today.month - 1
    next_year, next_month0 = divmod(number + 1, 12)
    resets_at = datetime(next_year, next_month0 + 1, 1, tzinfo=UTC).timestamp()
    return Window(number, resets_at)


def iso(moment: float) -> str:
    """`moment` as an ISO 8601 UTC time, e.g. `2025-03-01T00:00:00Z`."""
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")
