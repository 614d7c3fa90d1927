from __future__ import annotations

import pytest

from strata.errors import InvalidRequestError
from strata.gateway.limits.meters import TOO_LARGE
from strata.gateway.limits.plan import plan, refunds, reservation_for, seed_counters
from strata.gateway.limits.types import SLOTS_WINDOW, Ask, SeedEntry, Usage
from strata.gateway.principal import Principal

from . import scope

NOW = 1_750_000_000.0
ASK = Ask(tokens=300, cost_usd=0.5)


def test_unlimited_scopes_need_no_checks() -> None:
    principal = Principal("k", "t", "u", "user")
    assert plan(principal.scopes(), Ask(tokens=10**9, cost_usd=1e6), NOW) == ()


def test_one_check_per_set_limit_narrowest_scope_first() -> None:
    scopes = [scope("key", "k", rpm=10, concurrent=2), scope("tenant", "t", daily_cost_usd=1.5)]
    checks = plan(scopes, Ask(tokens=100, cost_usd=0.25), NOW)
    assert [(c.scope.kind, c.meter.name, c.limit, c.amount) for c in checks] == [
        ("key", "rpm", 10, 1),
        ("key", "concurrent", 2, 1),
        ("tenant", "daily_cost", 1_500_000, 250_000),
    ]
    assert checks[1].window == SLOTS_WINDOW
    assert checks[0].resets_at == (NOW // 60 + 1) * 60


def test_an_ask_larger_than_a_whole_limit_is_refused_at_once() -> None:
    with pytest.raises(InvalidRequestError) as info:
        plan([scope(tpm=1000)], Ask(tokens=1001), NOW)
    assert info.value.code == TOO_LARGE
    assert "lower max_tokens" in info.value.message


def test_an_ask_equal_to_the_whole_limit_fits() -> None:
    assert len(plan([scope(tpm=1000)], Ask(tokens=1000), NOW)) == 1


def test_release_gives_back_everything() -> None:
    reservation = reservation_for(
        "r1", ASK, plan([scope(rpm=5, tpm=500, concurrent=1, daily_cost_usd=1.0)], ASK, NOW)
    )
    back = {c.meter.name: amount for c, amount in refunds(reservation, None)}
    assert back == {"rpm": 1, "tpm": 300, "concurrent": 1, "daily_cost": 500_000}


def test_settle_gives_back_the_unused_part_and_the_slot_but_not_the_request() -> None:
    reservation = reservation_for(
        "r1", ASK, plan([scope(rpm=5, tpm=500, concurrent=1, daily_cost_usd=1.0)], ASK, NOW)
    )
    back = {c.meter.name: amount for c, amount in refunds(reservation, Usage(120, 0.2))}
    assert back == {"tpm": 180, "concurrent": 1, "daily_cost": 300_000}


@pytest.mark.parametrize("usage", [Usage(10_000, 99.0), Usage(300, 0.5)])
def test_usage_at_or_beyond_the_reservation_gives_nothing_back(usage: Usage) -> None:
    reservation = reservation_for("r1", ASK, plan([scope(tpm=500, daily_cost_usd=1.0)], ASK, NOW))
    assert refunds(reservation, usage) == []


def test_negative_usage_counts_as_none() -> None:
    reservation = reservation_for("r1", ASK, plan([scope(tpm=500)], ASK, NOW))
    assert [amount for _, amount in refunds(reservation, Usage(-5))] == [300]


def test_seed_counters_are_in_meter_units() -> None:
    entry = SeedEntry("tenant", "t", 10, 0.25, 40, 1.5)
    assert [(m.name, v) for m, v in seed_counters(entry)] == [
        ("daily_tokens", 10),
        ("daily_cost", 250_000),
        ("monthly_tokens", 40),
        ("monthly_cost", 1_500_000),
    ]
