"""Limits and quotas that hold exactly under concurrency: reserve at admission, settle at the end.

Per key, user and tenant (`Scope`s): requests and tokens per fixed UTC minute, requests in
flight, and token and cost budgets per UTC day and calendar month. The gateway calls:

    limiter = build_limiter(settings)
    await limiter.seed(entries_from_ledger)                       # once, at start-up
    reservation = await limiter.reserve(principal.scopes(), Ask(tokens=prompt + max_tokens,
                                                                 cost_usd=price))  # or 429/503
    try:
        ...dispatch...
    except BaseException:
        await limiter.release(reservation)                         # a failure costs nothing
        raise
    await limiter.settle(reservation, Usage(tokens=used, cost_usd=cost))

Fixed windows rather than sliding ones: one integer per scope and window is exact and atomic
(one Redis script), costs O(1) memory whatever the request rate, and lets a settle correct
exactly the window it reserved from. The price is the usual fixed-window burst: up to twice
a per-minute limit across a minute boundary. The limiter knows nothing about HTTP, models or
prices: the gateway turns a request into an `Ask`.
"""

from __future__ import annotations

from strata.gateway.limits.factory import build_limiter
from strata.gateway.limits.memory import MemoryLimiter
from strata.gateway.limits.meters import (
    CONCURRENCY,
    QUOTA,
    RATE_LIMIT,
    TOO_LARGE,
)
from strata.gateway.limits.redis_limiter import UNREACHABLE_CODE, RedisLimiter
from strata.gateway.limits.types import Ask, Clock, Limiter, Reservation, SeedEntry, Usage

__all__ = [
    "CONCURRENCY",
    "QUOTA",
    "RATE_LIMIT",
    "TOO_LARGE",
    "UNREACHABLE_CODE",
    "Ask",
    "Clock",
    "Limiter",
    "MemoryLimiter",
    "RedisLimiter",
    "Reservation",
    "SeedEntry",
    "Usage",
    "build_limiter",
]
