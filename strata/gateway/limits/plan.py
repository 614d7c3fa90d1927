"""Which limits a request counts against, and what settling or releasing gives back.

`plan` turns scopes and an ask into `Check`s (one per limit set, with its current window) and
refuses at once a request that no window could ever hold. `refunds` says how much each check
gets back. Both are pure: storage is the backends' business.
"""

from __future__ import annotations

from collections.abc import Sequence

from strata.gateway.limits.meters import (
    DAILY_COST,
    DAILY_TOKENS,
    METERS,
    MONTHLY_COST,
    MONTHLY_TOKENS,
    Measure,
    Meter,
    ceiling,
    usd_to_micros,
)
from strata.gateway.limits.rejections import too_large
from strata.gateway.limits.types import SLOTS_WINDOW, Ask, Check, Reservation, SeedEntry, Usage
from strata.gateway.principal import Limits, Scope


def plan(scopes: Sequence[Scope], ask: Ask, now: float) -> tuple[Check, ...]:
    """A check for every limit of every scope, narrowest scope first; unlimited scopes add
    none. Raises `InvalidRequestError` (`request_too_large`) if the ask exceeds a whole limit."""
    checks: list[Check] = []
    for scope in scopes:
        limits = scope.limits
        if _is_unlimited(limits):
            continue
        for meter in METERS:
            value = getattr(limits, meter.field)
            if value is not None:
                checks.append(_check(scope, meter, value, ask, now))
    return tuple(checks)


def _is_unlimited(limits: Limits) -> bool:
    # Spelled out: the hot path for unlimited scopes (`Limits.is_unlimited` is generic, slower).
    return (
        limits.rpm is None
        and limits.tpm is None
        and limits.concurrent is None
        and limits.daily_tokens is None
        and limits.monthly_tokens is None
        and limits.daily_cost_usd is None
        and limits.monthly_cost_usd is None
    )


def _check(scope: Scope, meter: Meter, value: int | float, ask: Ask, now: float) -> Check:
    if meter.window is None:
        window, resets_at = SLOTS_WINDOW, 0.0
    else:
        window, resets_at = meter.window(now)
    amount = _amount(meter.measure, ask)
    assert amount >= 0, f"negative ask {ask}"
    check = Check(scope, meter, ceiling(meter, value), amount, window, resets_at)
    if check.amount > check.limit:
        raise too_large(check, now)
    return check


def _amount(measure: Measure, ask: Ask) -> int:
    if measure == "tokens":
        return ask.tokens
    if measure == "cost":
        return ask.cost_micros
    if measure == "requests":
        return ask.requests
    return 1  # slots: one request in flight


def reservation_for(reservation_id: str, ask: Ask, checks: tuple[Check, ...]) -> Reservation:
    return Reservation(reservation_id, ask.requests, ask.tokens, ask.cost_micros, checks)


def refunds(reservation: Reservation, usage: Usage | None) -> list[tuple[Check, int]]:
    """What each check gets back: on release (`usage` None) everything; on settle the unused
    tokens and cost (usage beyond the reservation counts as the reservation) and the slot."""
    if not reservation.checks:
        return []
    back: dict[Measure, int] = {"slots": 1}
    if usage is None:
        back["requests"] = reservation.requests
        back["tokens"] = reservation.tokens
        back["cost"] = reservation.cost_micros
    else:
        back["requests"] = 0
        back["tokens"] = reservation.tokens - _clamp(usage.tokens, reservation.tokens)
        cost = usd_to_micros(usage.cost_usd)
        back["cost"] = reservation.cost_micros - _clamp(cost, reservation.cost_micros)
    return [(c, back[c.meter.measure]) for c in reservation.checks if back[c.meter.measure] > 0]


def _clamp(used: int, reserved: int) -> int:
    return min(max(used, 0), reserved)


def seed_counters(entry: SeedEntry) -> tuple[tuple[Meter, int], ...]:
    """The four day and month counters a ledger entry starts, in each meter's unit."""
    return (
        (DAILY_TOKENS, entry.day_tokens),
        (DAILY_COST, usd_to_micros(entry.day_cost_usd)),
        (MONTHLY_TOKENS, entry.month_tokens),
        (MONTHLY_COST, usd_to_micros(entry.month_cost_usd)),
    )
