"""The errors a limiter raises, worded so a caller knows which limit, how much is left, and when.

Three kinds: a window or budget that is full for now (`rate_limit_exceeded`, `quota_exceeded`:
retry when it resets), too many requests in flight (`concurrency_limit_exceeded`: retry in a
moment), all 429s, and a request that asks more than the whole limit (`request_too_large`, a
400: it can never be admitted, so the message says to lower max_tokens instead of to retry).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from strata.errors import InvalidRequestError, RateLimitError
from strata.gateway.limits import windows
from strata.gateway.limits.meters import QUOTA, TOO_LARGE, Measure, Meter
from strata.gateway.limits.types import Check

CONCURRENCY_RETRY_S = 1.0  # a slot frees when any request in flight ends: try again soon

Failure = tuple[Check, int]  # a check that did not fit, and how much of its limit was used

_HINTS: dict[Measure, str] = {
    "tokens": "lower max_tokens or shorten the prompt",
    "cost": "lower max_tokens, shorten the prompt or use a cheaper model",
    "requests": "ask an administrator to raise it",
    "slots": "ask an administrator to raise it",
}


def rejection(failures: Sequence[Failure], now: float) -> RateLimitError:
    """The error for a reservation that did not fit: the failure that clears last, so a
    caller who waits `retry_after_s` is not turned away at once by another limit."""
    check, used = max(failures, key=lambda failure: retry_after(failure[0], now))
    return exceeded(check, used, now)


def retry_after(check: Check, now: float) -> float:
    """Seconds until `check`'s window resets (a short pause for a concurrency limit)."""
    if check.meter.is_slots:
        return CONCURRENCY_RETRY_S
    return max(check.resets_at - now, 0.0)


def exceeded(check: Check, used: int, now: float) -> RateLimitError:
    """`check` is full for now: `used` of its `limit` is taken and the ask does not fit."""
    meter, who = check.meter, _who(check)
    if meter.is_slots:
        message = (
            f"Too many concurrent requests for {who}: the limit is {check.limit} at once and "
            f"{used} are in flight; retry when one finishes."
        )
        return RateLimitError(message, retry_after_s=CONCURRENCY_RETRY_S, code=meter.code)
    title = "Quota exceeded" if meter.code == QUOTA else "Rate limit exceeded"
    left = max(check.limit - used, 0)
    wait = retry_after(check, now)
    message = (
        f"{title} for {who}: the {meter.label} is {_fmt(meter, check.limit)}; "
        f"{_fmt(meter, left)} left, {_fmt(meter, check.amount)} asked; "
        f"it resets at {windows.iso(check.resets_at)} (in {math.ceil(wait)} s)."
    )
    return RateLimitError(message, retry_after_s=wait, code=meter.code)


def too_large(check: Check, now: float) -> InvalidRequestError:
    """`check`'s whole limit is smaller than the ask: waiting will never help, so this is a
    400 naming max_tokens rather than a 429 that clients would retry."""
    meter = check.meter
    message = (
        f"Request too large for {_who(check)}: it asks {_fmt(meter, check.amount)} but the "
        f"{meter.label} is {_fmt(meter, check.limit)}, so it can never be admitted; "
        f"{_HINTS[meter.measure]}."
    )
    return InvalidRequestError(message, code=TOO_LARGE, param="max_tokens")


def _who(check: Check) -> str:
    return f"{check.scope.kind} '{check.scope.id}'"


def _fmt(meter: Meter, amount: int) -> str:
    if meter.measure == "cost":
        return _usd(amount)
    unit = "token" if meter.measure == "tokens" else "request"
    return f"{amount:,} {unit}" + ("" if amount == 1 else "s")


def _usd(micros: int) -> str:
    """Whole micro-dollars as `$1.50`, `$0.000125`: exact, at least two decimals."""
    whole, fraction = divmod(micros, 1_000_000)
    return f"${whole:,}.{f'{fraction:06d}'.rstrip('0').ljust(2, '0')}"
