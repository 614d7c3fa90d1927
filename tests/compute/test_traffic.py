"""Traffic profiles: CSV (errors name the line), a ratio on a daily shape, the usage ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from strata.compute.traffic import ledger_profile, ledger_window, read_csv, shaped_profile
from strata.config import Settings
from strata.errors import ConfigError
from strata.gateway.ledger import LedgerWriter, UsageRecord
from strata.store.database import Database


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "traffic.csv"
    path.write_text(text)
    return path


def test_csv_with_header_comments_and_timestamps(tmp_path: Path) -> None:
    path = write(
        tmp_path, "# a week\nhour,requests\n2025-01-06T00:00,100\n\n2025-01-06T01:00,250.5\n"
    )
    profile = read_csv(path)
    assert profile.requests_per_hour == (100.0, 250.5)
    assert profile.peak_to_average == pytest.approx(250.5 / 175.25)
    assert profile.source == "traffic.csv (2 hours)"


def test_csv_of_bare_numbers(tmp_path: Path) -> None:
    assert read_csv(write(tmp_path, "1\n2\n3\n")).requests_per_hour == (1.0, 2.0, 3.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hour,requests\n0,10\n1,lots\n", "line 3: 'lots' is not a number"),
        ("0,10\nhour,requests\n", "line 2: 'requests' is not a number"),
        ("10\n-5\n", "line 2: '-5' requests; the count must be a finite number >= 0"),
        ("10\nnan\n", "line 2: 'nan' requests"),
        ("hour,requests\n", "no hours of traffic"),
        ("0\n0\n", "every hour has 0 requests"),
    ],
)
def test_csv_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_csv(write(tmp_path, text))


def test_missing_csv_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--csv .*cannot read it"):
        read_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize("ratio", [1.0, 1.5, 2.0, 3.0, 10.0, 20.0])
@pytest.mark.parametrize("shape", ["diurnal", "weekday"])
def test_shaped_profiles_hit_the_ratio_and_the_mean(ratio: float, shape: str) -> None:
    profile = shaped_profile(ratio, 2.0, shape)
    assert profile.hours == 168
    assert profile.mean == pytest.approx(7200)
    assert profile.peak_to_average == pytest.approx(ratio)
    assert min(profile.requests_per_hour) >= 0


def test_weekday_shape_has_quieter_weekends() -> None:
    week = shaped_profile(2.0, 1.0, "weekday").requests_per_hour
    assert max(week[5 * 24 :]) < max(week[: 5 * 24])


@pytest.mark.parametrize(
    ("ratio", "mean", "shape", "message"),
    [
        (0.5, 1.0, "diurnal", "--peak-to-average 0.5: the peak is at least the average"),
        (2.0, 0.0, "diurnal", "--mean-rps 0.0"),
        (100.0, 1.0, "diurnal", "too spiky"),
        (2.0, 1.0, "square", "--shape 'square'"),
    ],
)
def test_shape_errors(ratio: float, mean: float, shape: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        shaped_profile(ratio, mean, shape)


# -- the usage ledger, in a real PostgreSQL ----------------------------------------------------

NOW = datetime(2025, 3, 10, 12, 30, tzinfo=UTC)  # window: 2025-03-09 12:00 to 03-10 12:00


def record(n: int, at: datetime, model: str = "a", upstream: str | None = "engine") -> UsageRecord:
    return UsageRecord(request_id=f"r{n}", at=at, tenant="t", user="u", key_id="k",
                       model=model, upstream=upstream)  # fmt: skip


async def test_ledger_counts_requests_per_complete_hour(
    pg_database: Database, pg_settings: Settings
) -> None:
    day = datetime(2025, 3, 9, tzinfo=UTC)
    at_13 = [day + timedelta(hours=13, minutes=m) for m in (0, 5, 30, 59)]
    writer = LedgerWriter(pg_database.pool, flush_interval_s=60)
    for n, at in enumerate(at_13):
        writer.record(record(n, at, model="b" if n == 3 else "a"))
    writer.record(record(10, day + timedelta(hours=35, minutes=59)))  # 03-10 11:59: last hour
    writer.record(record(11, NOW - timedelta(minutes=20)))  # 12:10: the hour is not over
    writer.record(record(12, day + timedelta(hours=11)))  # before the window
    writer.record(record(13, day + timedelta(hours=13, minutes=1), upstream=None))  # refused
    await writer.flush()

    profile = ledger_profile(pg_settings, days=1, now=NOW)
    counts = profile.requests_per_hour
    assert len(counts) == 24 and counts[1] == 4 and counts[23] == 1 and sum(counts) == 5
    assert "usage ledger, 1 days to 2025-03-10 12:00 UTC" in profile.source
    only_a = ledger_profile(pg_settings, days=1, model="a", now=NOW).requests_per_hour
    assert only_a[1] == 3


async def test_an_empty_ledger_says_what_to_do(
    pg_database: Database, pg_settings: Settings
) -> None:
    with pytest.raises(ConfigError, match=r"has no requests.*--csv or --peak-to-average"):
        ledger_profile(pg_settings, days=7, now=NOW)


def test_ledger_window_is_whole_hours() -> None:
    start, end = ledger_window(7, NOW)
    assert end == datetime(2025, 3, 10, 12, tzinfo=UTC) and end - start == timedelta(days=7)
    with pytest.raises(ConfigError, match=r"--days 0"):
        ledger_window(0, NOW)
