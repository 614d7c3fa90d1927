"""The rate search on its own (an exact capacity), then a real sweep on the tiny model."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from strata.bench.client import Target
from strata.bench.shapes import Budget
from strata.bench.slo import Slo
from strata.bench.sweep import RateSearch, SweepPlan, run_sweep
from strata.bench.workload import Fixed, Workload
from strata.errors import ConfigError


def search(plan: SweepPlan, capacity: float) -> tuple[list[float], float | None]:
    """The rates probed, and the answer, against a server that holds every rate ≤ capacity."""
    rates, state = [], RateSearch(plan)
    while (rate := state.next_rate()) is not None:
        rates.append(rate)
        state.record(rate, rate <= capacity)
        assert len(rates) < 50
    return rates, state.held


def test_doubles_up_then_bisects() -> None:
    rates, best = search(SweepPlan(start_rate=1, refine_steps=3), capacity=5.2)
    assert rates == [1, 2, 4, 8, 6, 5, 5.5]
    assert best == 5


def test_halves_down_when_the_start_is_too_fast() -> None:
    rates, best = search(SweepPlan(start_rate=16, refine_steps=2, min_rate=1), capacity=3)
    assert rates == [16, 8, 4, 2, 3, 3.5]
    assert best == 3


def test_stops_at_the_tolerance() -> None:
    rates, best = search(SweepPlan(start_rate=1, refine_steps=20, tolerance=0.05), capacity=3.3)
    assert best is not None and 3.3 / 1.05 <= best <= 3.3
    assert len(rates) < 10


def test_stops_at_the_max_and_min_rates() -> None:
    assert search(SweepPlan(start_rate=1, max_rate=10), capacity=math.inf) == ([1, 2, 4, 8, 10], 10)
    assert search(SweepPlan(start_rate=1, min_rate=0.25), capacity=0) == ([1, 0.5, 0.25], None)


def test_zero_refine_steps_answers_with_the_bracket() -> None:
    assert search(SweepPlan(start_rate=1, refine_steps=0), capacity=3) == ([1, 2, 4], 2)


@pytest.mark.parametrize(
    "kwargs",
    [{"start_rate": 0}, {"start_rate": 2, "max_rate": 1}, {"min_rate": 2}, {"tolerance": 0}],
)
def test_bad_plans_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SweepPlan(**kwargs)


TINY = Workload(Fixed(12), Fixed(4), seed=9)


async def test_a_short_sweep_on_the_tiny_model_finds_a_finite_rate(target: Target) -> None:
    plan = SweepPlan(start_rate=4, max_rate=16, min_rate=1)
    sweep = await run_sweep(target, TINY, Slo(ttft_ms=30_000), plan, Budget(requests=5))
    assert [p.rate for p in sweep.probes] == [4, 8, 16]  # a generous SLO holds up to the max
    assert all(p.held and p.result.summary.succeeded == 5 for p in sweep.probes)
    assert sweep.best_rate == 16 and sweep.best is sweep.probes[-1]
    assert [p.result.shape.describe()["stream"] for p in sweep.probes] == [0, 1, 2]
    assert math.isfinite(sweep.best_rate)


async def test_an_slo_nothing_meets_descends_and_answers_none(target: Target) -> None:
    plan = SweepPlan(start_rate=8, min_rate=2, refine_steps=1)
    sweep = await run_sweep(target, TINY, Slo(ttft_ms=0.001), plan, Budget(requests=2))
    assert [p.rate for p in sweep.probes] == [8, 4, 2]
    assert not any(p.held for p in sweep.probes) and sweep.best_rate is None and sweep.best is None


async def test_a_sweep_refused_by_the_server_stops_at_once(target: Target) -> None:
    wrong = replace(target, api_key="wrong", model="tiny")
    plan = SweepPlan(start_rate=16, max_rate=16)
    sweep = await run_sweep(wrong, TINY, Slo(ttft_ms=1000), plan, Budget(requests=2))
    assert len(sweep.probes) == 1 and sweep.probes[0].result.summary.errors == {"401": 2}
