"""A user or tenant nearing a budget: tokens and cost used this UTC day and calendar month.

Usage is counted from the outcomes this gateway settles, on top of what the usage ledger held
at start-up (`seed`), for scopes that carry a daily or monthly budget. With several gateway
replicas each one sees its own traffic plus the start-up seed, so this rule warns late there:
the limiter itself (exact, shared through Redis) still enforces the budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from strata.telemetry.alerts.state import AlertKey, Reading

RULE = "quota_near"
DAY_S = 86_400
# Each budget (a `Limits` field) and how a message names it.
BUDGETS = {"daily_tokens": "daily token", "monthly_tokens": "monthly token",
           "daily_cost_usd": "daily cost", "monthly_cost_usd": "monthly cost"}  # fmt: skip


class QuotaLimits(Protocol):
    """The budgets of one scope (`strata.gateway.principal.Limits`); None: no budget."""

    @property
    def daily_tokens(self) -> int | None: ...
    @property
    def monthly_tokens(self) -> int | None: ...
    @property
    def daily_cost_usd(self) -> float | None: ...
    @property
    def monthly_cost_usd(self) -> float | None: ...


class Spend(Protocol):
    @property
    def tokens(self) -> int: ...
    @property
    def cost_usd(self) -> float: ...


class PeriodUsageLike(Protocol):
    """One scope's usage so far today and this month (`strata.gateway.ledger.PeriodUsage`)."""

    @property
    def kind(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def day_tokens(self) -> int: ...
    @property
    def day_cost_usd(self) -> float: ...
    @property
    def month_tokens(self) -> int: ...
    @property
    def month_cost_usd(self) -> float: ...


@dataclass
class _Used:
    """One scope's usage in one day and one month (`day` and `month` name them)."""

    day: int
    month: int
    limits: QuotaLimits | None = None  # None until a request shows the scope's budgets
    daily_tokens: float = 0
    daily_cost_usd: float = 0.0
    monthly_tokens: float = 0
    monthly_cost_usd: float = 0.0

    def roll(self, day: int, month: int) -> None:
        """Start from zero in a new day or month."""
        if day != self.day:
            self.day, self.daily_tokens, self.daily_cost_usd = day, 0, 0.0
        if month != self.month:
            self.month, self.monthly_tokens, self.monthly_cost_usd = month, 0, 0.0


class QuotaUsage:
    """Usage per (scope kind, scope id) for the scopes that have a budget."""

    def __init__(self) -> None:
        self._used: dict[tuple[str, str], _Used] = {}

    def add(self, kind: str, scope_id: str, limits: QuotaLimits, spend: Spend, now: float) -> None:
        key = (kind, scope_id)
        if not _has_budget(limits):
            self._used.pop(key, None)  # budgets removed, or never set: nothing to watch
            return
        used = self._cell(key, now)
        used.limits = limits
        used.daily_tokens += spend.tokens
        used.monthly_tokens += spend.tokens
        used.daily_cost_usd += spend.cost_usd
        used.monthly_cost_usd += spend.cost_usd

    def seed(self, entries: Iterable[PeriodUsageLike], now: float) -> None:
        """Start from the ledger's day and month (user and tenant scopes)."""
        day, month = _periods(now)
        for entry in entries:
            if entry.kind in ("user", "tenant"):
                self._used[(entry.kind, entry.id)] = _Used(
                    day, month, None, entry.day_tokens, entry.day_cost_usd, entry.month_tokens,
                    entry.month_cost_usd,
                )  # fmt: skip

    def readings(self, now: float, warn_fraction: float) -> Iterator[Reading]:
        """The share used of every budget set, for the scopes that used some."""
        day, month = _periods(now)
        for (kind, scope_id), used in self._used.items():
            if used.limits is None:
                continue
            used.roll(day, month)
            for budget in BUDGETS:
                limit = getattr(used.limits, budget)
                spent = getattr(used, budget)
                if limit and spent > 0:
                    yield _reading(kind, scope_id, budget, spent, limit, warn_fraction)

    def _cell(self, key: tuple[str, str], now: float) -> _Used:
        day, month = _periods(now)
        used = self._used.get(key)
        if used is None:
            used = self._used[key] = _Used(day, month)
        elif used.day != day or used.month != month:
            used.roll(day, month)
        return used


class QuotaRule:
    """Fires for each budget of a user or tenant that is `warn_fraction` used."""

    name = RULE
    severity = "warning"

    def __init__(self, usage: QuotaUsage, warn_fraction: float) -> None:
        self._usage = usage
        self._warn = warn_fraction

    def readings(self, now: float) -> Iterator[Reading]:
        return self._usage.readings(now, self._warn)


def _reading(
    kind: str, scope_id: str, budget: str, spent: float, limit: float, warn: float
) -> Reading:
    share = spent / limit
    amounts = (f"${spent:.2f} of ${limit:.2f}" if budget.endswith("_usd")
               else f"{spent:,.0f} of {limit:,.0f} tokens")  # fmt: skip
    message = (f"{kind} {scope_id} has used {share:.0%} of its {BUDGETS[budget]} budget "
               f"({amounts}); warns at {warn:.0%}")  # fmt: skip
    return Reading(AlertKey.of(RULE, scope=kind, id=scope_id, budget=budget), share, warn, message)


def _has_budget(limits: QuotaLimits) -> bool:
    return (
        limits.daily_tokens is not None
        or limits.monthly_tokens is not None
        or limits.daily_cost_usd is not None
        or limits.monthly_cost_usd is not None
    )


def _periods(now: float) -> tuple[int, int]:
    """The UTC day (days since the epoch) and calendar month (year x 12 + month - 1)."""
    utc = time.gmtime(now)
    return int(now // DAY_S), utc.tm_year * 12 + utc.tm_mon - 1
