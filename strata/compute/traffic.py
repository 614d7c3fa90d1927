"""Traffic profiles: requests per hour, from a CSV, a peak-to-average ratio, or the ledger.

A profile is one number per consecutive hour (a week is 168); the capacity planner treats it
as a pattern that repeats to fill a month. Requests per hour, not per second: an hourly mean
is what purchasing decisions (reserved, on-demand, spot) are made on; bursts within an hour
are what per-replica capacity *at the SLO* already absorbs.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from strata.errors import ConfigError

if TYPE_CHECKING:
    from strata.config import Settings

HOURS_PER_DAY = 24
HOURS_PER_WEEK = 168
SHAPES = ("diurnal", "weekday")
MAX_SHARPNESS = 1 << 12


@dataclass(frozen=True)
class TrafficProfile:
    """Requests in each consecutive hour, and where the numbers came from."""

    requests_per_hour: tuple[float, ...]
    source: str

    @property
    def hours(self) -> int:
        return len(self.requests_per_hour)

    @property
    def mean(self) -> float:
        return sum(self.requests_per_hour) / self.hours

    @property
    def peak(self) -> float:
        return max(self.requests_per_hour)

    @property
    def peak_to_average(self) -> float:
        return self.peak / self.mean if self.mean else 1.0


def _profile(values: list[float], source: str) -> TrafficProfile:
    if not values:
        raise ConfigError(f"{source}: no hours of traffic.")
    if not any(values):
        raise ConfigError(f"{source}: every hour has 0 requests; there is nothing to plan for.")
    return TrafficProfile(tuple(values), source)


# -- CSV --------------------------------------------------------------------------------------


def read_csv(path: Path) -> TrafficProfile:
    """One row per hour, oldest first: `requests` or `hour,requests` (the last column counts;
    a header row, blank lines and `#` comments are skipped). Errors name the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--csv {path}: cannot read it ({exc}).") from exc
    values: list[float] = []
    for number, row in enumerate(csv.reader(text.splitlines()), 1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        value = _csv_value(cells[-1], path, number, header_allowed=not values)
        if value is not None:
            values.append(value)
    return _profile(values, f"{path.name} ({len(values)} hours)")


def _csv_value(cell: str, path: Path, line: int, header_allowed: bool) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        if header_allowed and not any(ch.isdigit() for ch in cell):
            return None  # a header such as "hour,requests"
        raise ConfigError(
            f"--csv {path} line {line}: {cell!r} is not a number of requests; each row is "
            "'requests' or 'hour,requests' (requests in that hour, >= 0)."
        ) from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"--csv {path} line {line}: {cell!r} requests; the count must be a finite number >= 0."
        )
    return value


# -- a ratio and a daily shape -------------------------------------------------------------------


def shaped_profile(
    peak_to_average: float, mean_rps: float, shape: str = "diurnal"
) -> TrafficProfile:
    """A week whose hourly traffic has this mean and exactly this peak-to-average ratio: a
    daily curve peaking mid-afternoon (`diurnal`), weekends at half height in `weekday`."""
    if peak_to_average < 1:
        raise ConfigError(
            f"--peak-to-average {peak_to_average}: the peak is at least the average; use >= 1."
        )
    if mean_rps <= 0:
        raise ConfigError(f"--mean-rps {mean_rps}: give the average requests per second, > 0.")
    base = _base_shape(shape)
    sharp = _sharpen(base, peak_to_average, shape)
    mean_rph = mean_rps * 3600
    values = _scaled(sharp, peak_to_average, mean_rph)
    return _profile(values, f"{shape} shape for --peak-to-average {peak_to_average:g}")


def _base_shape(shape: str) -> list[float]:
    """Hourly weights in [0, 1] over a week, peak 1 at 15:00, trough 0 at 03:00."""
    if shape not in SHAPES:
        raise ConfigError(f"--shape {shape!r}: use one of {', '.join(SHAPES)}.")
    day = [0.5 - 0.5 * math.cos(2 * math.pi * (h - 3) / HOURS_PER_DAY) for h in range(24)]
    weekend = 0.5 if shape == "weekday" else 1.0
    return [w * (weekend if d >= 5 else 1.0) for d in range(7) for w in day]


def _sharpen(base: list[float], ratio: float, shape: str) -> list[float]:
    """Raise the shape to a power until its peak-to-mean can reach `ratio` with a floor >= 0."""
    power = 1
    while power <= MAX_SHARPNESS:
        shaped = [w**power for w in base]
        if max(shaped) / (sum(shaped) / len(shaped)) >= ratio:
            return shaped
        power *= 2
    raise ConfigError(
        f"--peak-to-average {ratio:g}: too spiky for a {shape} shape (one busy hour a day "
        "tops out near 24:1); pass the hours themselves with --csv."
    )


def _scaled(shape: list[float], ratio: float, mean: float) -> list[float]:
    """floor + height * shape with the given mean and peak = ratio * mean."""
    shape_mean = sum(shape) / len(shape)
    if shape_mean == 1.0:  # a flat shape: ratio is 1
        return [mean] * len(shape)
    height = (ratio - 1) * mean / (1 - shape_mean)
    floor = mean - height * shape_mean
    return [floor + height * w for w in shape]


# -- the usage ledger ---------------------------------------------------------------------------

_LEDGER_SQL = """
WITH counts AS (
    SELECT date_trunc('hour', at, 'UTC') AS hour, count(*) AS n
    FROM usage_ledger
    WHERE at >= %(start)s AND at < %(end)s AND upstream IS NOT NULL
      AND (%(model)s::text IS NULL OR model = %(model)s)
    GROUP BY 1
)
SELECT h.hour, coalesce(c.n, 0)
FROM generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour',
                     interval '1 hour') AS h(hour)
LEFT JOIN counts c ON c.hour = h.hour
ORDER BY h.hour
"""


def ledger_window(days: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The last `days` x 24 complete UTC hours before `now`."""
    if days < 1:
        raise ConfigError(f"--days {days}: measure at least one day (7 covers a weekly cycle).")
    end = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return end - timedelta(days=days), end


def ledger_profile(
    settings: Settings, days: int = 7, model: str | None = None, now: datetime | None = None
) -> TrafficProfile:
    """Requests per hour that the gateway sent to a model (ledger rows with an upstream),
    over the last `days` complete days, empty hours counted as 0."""
    from strata.store.database import Database  # the database stack: only for this source

    start, end = ledger_window(days, now)
    with Database(settings) as database, database.connect() as conn:
        params = {"start": start, "end": end, "model": model}
        rows = conn.execute(_LEDGER_SQL, params).fetchall()
    values = [float(count) for _, count in rows]
    what = f" for model {model}" if model else ""
    if not any(values):
        raise ConfigError(
            f"--from-ledger: the usage ledger has no requests{what} between {start:%Y-%m-%d %H:00}"
            f" and {end:%Y-%m-%d %H:00} UTC; serve traffic first, or use --csv or "
            "--peak-to-average."
        )
    return _profile(values, f"usage ledger{what}, {days} days to {end:%Y-%m-%d %H:00} UTC")
