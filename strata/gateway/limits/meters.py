"""The seven kinds of limit a scope can carry, and what each one counts.

A `Meter` ties one field of `Limits` to the unit it counts (requests, tokens, micro-dollars or
in-flight slots) and the window that resets it. Backends and messages read this one table; a
new kind of limit is a new row here. Meters know nothing about storage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from strata.gateway.limits import windows
from strata.gateway.limits.windows import Window

Measure = Literal["requests", "tokens", "cost", "slots"]

RATE_LIMIT = "rate_limit_exceeded"
QUOTA = "quota_exceeded"
CONCURRENCY = "concurrency_limit_exceeded"
TOO_LARGE = "request_too_large"

MICROS_PER_USD = 1_000_000


@dataclass(frozen=True, slots=True)
class Meter:
    """One kind of limit: `Limits.<field>`, counted in `measure`, reset by `window`."""

    name: str  # the Redis key segment, e.g. "daily_cost"
    field: str  # the attribute of `Limits` holding the ceiling
    measure: Measure
    window: Callable[[float], Window] | None  # None: a gauge of requests in flight
    label: str  # for messages: "tokens-per-minute limit"
    code: str  # the error code a rejection carries

    @property
    def is_slots(self) -> bool:
        return self.window is None


RPM = Meter("rpm", "rpm", "requests", windows.minute, "requests-per-minute limit", RATE_LIMIT)
TPM = Meter("tpm", "tpm", "tokens", windows.minute, "tokens-per-minute limit", RATE_LIMIT)
CONCURRENT = Meter("concurrent", "concurrent", "slots", None, "concurrency limit", CONCURRENCY)
DAILY_TOKENS = Meter(
    "daily_tokens", "daily_tokens", "tokens", windows.day, "daily token budget", QUOTA
)
MONTHLY_TOKENS = Meter(
    "monthly_tokens", "monthly_tokens", "tokens", windows.month, "monthly token budget", QUOTA
)
DAILY_COST = Meter("daily_cost", "daily_cost_usd", "cost", windows.day, "daily cost budget", QUOTA)
MONTHLY_COST = Meter(
    "monthly_cost", "monthly_cost_usd", "cost", windows.month, "monthly cost budget", QUOTA
)

METERS: tuple[Meter, ...] = (
    RPM,
    TPM,
    CONCURRENT,
    DAILY_TOKENS,
    MONTHLY_TOKENS,
    DAILY_COST,
    MONTHLY_COST,
)


def usd_to_micros(usd: float) -> int:
    """Dollars as whole micro-dollars (rounded to the nearest), so sums never drift."""
    return round(usd * MICROS_PER_USD)


def micros_to_usd(micros: int) -> float:
    return micros / MICROS_PER_USD


def ceiling(meter: Meter, value: int | float) -> int:
    """A `Limits` value in the meter's integer unit (cost limits become micro-dollars)."""
    return usd_to_micros(value) if meter.measure == "cost" else int(value)
