from __future__ import annotations

from datetime import datetime

import pytest

from strata.gateway.limits import windows


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso + "+00:00").timestamp()


def test_minute_number_and_reset() -> None:
    now = ts("2025-03-14T15:09:26")
    window = windows.minute(now)
    assert window.resets_at == ts("2025-03-14T15:10:00")
    assert windows.minute(now + 33) == window  # 15:09:59 is still the same minute
    assert windows.minute(now + 34).number == window.number + 1


def test_day_is_the_utc_day() -> None:
    window = windows.day(ts("2025-03-14T23:59:59"))
    assert window.resets_at == ts("2025-03-15T00:00:00")
    assert windows.day(ts("2025-03-15T00:00:00")).number == window.number + 1


@pytest.mark.parametrize(
    ("moment", "resets_at"),
    [
        ("2025-01-31T23:59:59", "2025-02-01T00:00:00"),
        ("2024-02-29T12:00:00", "2024-03-01T00:00:00"),  # leap year
        ("2025-12-31T23:59:59", "2026-01-01T00:00:00"),  # year end
        ("1970-01-01T00:00:00", "1970-02-01T00:00:00"),
    ],
)
def test_month_resets_on_the_first_of_the_next_calendar_month(moment: str, resets_at: str) -> None:
    assert windows.month(ts(moment)).resets_at == ts(resets_at)


def test_months_are_numbered_consecutively_across_a_year_end() -> None:
    december = windows.month(ts("2025-12-15T00:00:00"))
    january = windows.month(ts("2026-01-01T00:00:00"))
    assert january.number == december.number + 1
    assert december.number == 2025 * 12 + 11


def test_iso_is_utc_with_z() -> None:
    assert windows.iso(ts("2025-03-01T00:00:00")) == "2025-03-01T00:00:00Z"
