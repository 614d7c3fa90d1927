from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from strata.gateway.principal import Limits
from strata.telemetry.alerts.quota import RULE, QuotaRule, QuotaUsage
from strata.telemetry.alerts.state import AlertKey

NOON = datetime(2025, 3, 31, 12, tzinfo=UTC).timestamp()
NEXT_DAY = datetime(2025, 4, 1, 0, 0, 1, tzinfo=UTC).timestamp()  # also a new month


@dataclass(frozen=True)
class _Spend:
    tokens: int
    cost_usd: float = 0.0


@dataclass(frozen=True)
class _Seed:
    kind: str
    id: str
    day_tokens: int
    day_cost_usd: float
    month_tokens: int
    month_cost_usd: float


def _shares(rule: QuotaRule, now: float) -> dict[AlertKey, float]:
    return {r.key: r.value for r in rule.readings(now)}


def _key(budget: str, scope: str = "user", scope_id: str = "acme/alice") -> AlertKey:
    return AlertKey.of(RULE, scope=scope, id=scope_id, budget=budget)


def test_the_share_used_of_each_budget_is_read() -> None:
    usage = QuotaUsage()
    rule = QuotaRule(usage, warn_fraction=0.8)
    limits = Limits(daily_tokens=1000, monthly_cost_usd=10.0)
    usage.add("user", "acme/alice", limits, _Spend(700, 1.0), NOON)
    assert _shares(rule, NOON) == {_key("daily_tokens"): 0.7, _key("monthly_cost_usd"): 0.1}
    usage.add("user", "acme/alice", limits, _Spend(150, 0.0), NOON + 60)
    reading = next(r for r in rule.readings(NOON + 60) if r.key == _key("daily_tokens"))
    assert reading.value == pytest.approx(0.85) and reading.threshold == 0.8
    assert reading.message == (
        "user acme/alice has used 85% of its daily token budget (850 of 1,000 tokens); warns at 80%"
    )


def test_a_new_day_and_month_start_from_zero() -> None:
    usage = QuotaUsage()
    rule = QuotaRule(usage, warn_fraction=0.8)
    usage.add("tenant", "acme", Limits(daily_tokens=100, monthly_tokens=1000), _Spend(90), NOON)
    assert len(_shares(rule, NOON)) == 2
    assert _shares(rule, NEXT_DAY) == {}


def test_scopes_without_budgets_are_not_tracked_and_a_removed_budget_forgets_the_scope() -> None:
    usage = QuotaUsage()
    rule = QuotaRule(usage, warn_fraction=0.8)
    usage.add("user", "acme/bob", Limits(rpm=5), _Spend(10**9), NOON)
    assert _shares(rule, NOON) == {}
    usage.add("user", "acme/alice", Limits(daily_tokens=100), _Spend(90), NOON)
    usage.add("user", "acme/alice", Limits(), _Spend(1), NOON)
    assert _shares(rule, NOON) == {}


def test_usage_from_the_ledger_counts_once_the_budget_is_known() -> None:
    usage = QuotaUsage()
    rule = QuotaRule(usage, warn_fraction=0.8)
    usage.seed([_Seed("user", "acme/alice", 800, 0.0, 900, 0.0),
                _Seed("key", "k1", 10**6, 0.0, 10**6, 0.0)], NOON)  # fmt: skip
    assert _shares(rule, NOON) == {}  # budgets come with the scope's next request
    usage.add("user", "acme/alice", Limits(daily_tokens=1000), _Spend(50), NOON)
    assert _shares(rule, NOON) == {_key("daily_tokens"): 0.85}
