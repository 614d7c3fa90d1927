"""The capacity planner against hand-computed bills."""

from __future__ import annotations

from dataclasses import replace

import pytest

from strata.compute.capacity import (
    CapacityInputs,
    TierPrices,
    best_baseline,
    busy_share,
    monthly_cost,
    plan_capacity,
    replicas_needed,
)
from strata.compute.traffic import TrafficProfile
from strata.errors import ConfigError

PRICES = TierPrices(reserved=2.0, on_demand=3.0, spot=1.0)


def profile(*rph: float) -> TrafficProfile:
    return TrafficProfile(tuple(rph), "test")


def inputs(p: TrafficProfile, **kw: object) -> CapacityInputs:
    return replace(CapacityInputs(p, 1.0, "a100-80gb", PRICES), **kw)  # type: ignore[arg-type]


# 23 quiet hours (1 replica) and one busy hour (7 replicas): peak-to-average exactly 10:1.
SPIKY = profile(*[1400.0] * 23, 23000.0)


def test_replicas_round_up_per_hour_with_a_floor() -> None:
    assert replicas_needed(profile(3600, 3601, 0, 36000), 1.0, 1) == (1, 2, 1, 10)
    assert replicas_needed(profile(0, 7200), 1.0, 0) == (0, 2)
    assert replicas_needed(profile(0, 7200), 2.0, 3) == (3, 3)


def test_a_flat_profile_makes_reserving_everything_cheapest() -> None:
    plan = plan_capacity(inputs(profile(*[7200.0] * 168)))  # 2 replicas every hour
    assert plan.strategy("all on-demand").monthly_usd == pytest.approx(2 * 730 * 3.0)
    assert plan.strategy("all reserved at peak").monthly_usd == pytest.approx(2 * 730 * 2.0)
    assert plan.strategy("reserved + on-demand").reserved_replicas == 2
    assert plan.recommended.reserved_replicas == 2
    assert plan.recommended.monthly_usd == pytest.approx(2920.0)


def test_a_spiky_profile_makes_reserved_plus_burst_beat_reserving_the_peak() -> None:
    assert SPIKY.peak_to_average == pytest.approx(10.0)
    plan = plan_capacity(inputs(SPIKY))
    assert plan.replicas == (1,) * 23 + (7,)
    burst = plan.strategy("reserved + on-demand")
    assert burst.reserved_replicas == 1
    assert burst.on_demand_hours == pytest.approx(6 * 730 / 24)  # 182.5
    assert burst.monthly_usd == pytest.approx(1 * 730 * 2.0 + 182.5 * 3.0)  # 2007.5
    assert plan.strategy("all reserved at peak").monthly_usd == pytest.approx(7 * 730 * 2.0)
    assert burst.monthly_usd < plan.strategy("all on-demand").monthly_usd == pytest.approx(2737.5)


def test_spot_burst_is_priced_with_its_fallback_and_its_risk() -> None:
    plan = plan_capacity(inputs(SPIKY, spot_preemptions_per_hour=0.01, failover_s=90.0))
    spot = plan.strategy("reserved + spot")
    assert spot.reserved_replicas == 1  # the always-needed floor stays reserved
    assert spot.spot_hours == pytest.approx(182.5)
    assert spot.risk is not None
    assert spot.risk.preemptions == pytest.approx(1.825)
    assert spot.risk.retried_requests == pytest.approx(1.825 * 1.0 * 90)
    assert spot.risk.lost_replica_hours == pytest.approx(1.825 * 90 / 3600)
    assert spot.risk.retried_share == pytest.approx(164.25 / (2300 * 730))
    assert spot.monthly_usd == pytest.approx(1460 + 182.5 * 1.0 + 1.825 * 1.0 * 3.0)
    assert plan.recommended is spot


def test_failover_slower_than_90_seconds_rules_spot_out() -> None:
    plan = plan_capacity(inputs(SPIKY, failover_s=120.0))
    spot = plan.strategy("reserved + spot")
    assert spot.risk is not None and not spot.risk.within_rule
    assert spot.monthly_usd < plan.recommended.monthly_usd
    assert plan.recommended.name == "reserved + on-demand"


def test_no_spot_price_means_no_spot_strategy() -> None:
    plan = plan_capacity(inputs(SPIKY, prices=replace(PRICES, spot=None)))
    assert [s.name for s in plan.strategies] == [
        "all on-demand",
        "all reserved at peak",
        "reserved + on-demand",
    ]


WEEKISH = profile(*[3600.0 * r for r in [1, 1, 2, 3, 5, 8, 8, 6, 4, 3, 2, 2, 1, 1, 1, 2, 4, 7,
                                         9, 9, 5, 3, 2, 1]])  # fmt: skip


@pytest.mark.parametrize("reserved", [0.5, 1.0, 1.5, 2.0, 2.5, 2.9])
def test_the_baseline_search_finds_the_minimum(reserved: float) -> None:
    i = inputs(WEEKISH, prices=replace(PRICES, reserved=reserved))
    replicas = replicas_needed(WEEKISH, 1.0, 1)
    best = best_baseline(i, replicas)
    costs = [monthly_cost(i, replicas, b) for b in range(max(replicas) + 1)]
    assert costs[best] == pytest.approx(min(costs))
    # The rule behind it: the b-th reserved replica pays when it is needed in more than
    # reserved / on-demand of the hours.
    expected = max((b for b in range(1, 10) if busy_share(replicas, b) > reserved / 3.0), default=0)
    assert best == expected


def test_starts_count_burst_replicas_started() -> None:
    plan = plan_capacity(inputs(SPIKY))
    assert plan.strategy("all on-demand").starts == pytest.approx(6 * 730 / 24)
    assert plan.strategy("all reserved at peak").starts == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"replica_rps": 0.0}, "--replica-rps must be > 0.*strata bench serve --sweep"),
        ({"gpus_per_replica": 0}, "--gpus-per-replica"),
        ({"failover_s": -1.0}, "--failover-s"),
    ],
)
def test_bad_inputs_name_the_option(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_capacity(inputs(SPIKY, **change))
