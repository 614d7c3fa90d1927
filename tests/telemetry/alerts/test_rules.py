from __future__ import annotations

import random

import pytest

from strata.telemetry.alerts.rules import COST, E2E, TTFT, CostRule, LatencyRule
from strata.telemetry.alerts.state import AlertKey, Reading
from strata.telemetry.alerts.windows import Slices

WINDOW_S, BASELINE_S = 10.0, 100.0
ROUTE = "/v1/chat/completions"
T0 = 1_000_000.0


def _feed(series: dict[str, Slices], name: str, values: list[float], start: float, span: float):
    """`values` spread evenly over [start, start + span)."""
    slices = series.setdefault(name, Slices(WINDOW_S, BASELINE_S))
    for i, value in enumerate(values):
        slices.add(value, start + span * i / len(values))


def _latency(series: dict[str, Slices], **kw: float | None) -> LatencyRule:
    fixed = kw.pop("fixed_s", None)
    factor = kw.pop("jump_factor", 3.0)
    minimum = kw.pop("jump_min_s", 0.1)
    assert not kw
    return LatencyRule(E2E, series, fixed, factor, minimum or 0.0, min_samples=20)


def _only(readings: list[Reading]) -> Reading:
    assert len(readings) == 1, readings
    return readings[0]


def test_p99_over_a_fixed_threshold() -> None:
    series: dict[str, Slices] = {}
    rule = _latency(series, fixed_s=1.0, jump_factor=None)
    _feed(series, ROUTE, [0.2] * 99 + [3.0] * 2, T0, WINDOW_S)
    reading = _only(list(rule.readings(T0 + WINDOW_S)))
    assert reading.key == AlertKey.of(E2E, route=ROUTE)
    assert reading.value == pytest.approx(3.0, rel=0.01) and reading.threshold == 1.0
    assert "over 1000 ms (fixed threshold)" in reading.message


def test_p99_jumping_against_its_own_baseline() -> None:
    series: dict[str, Slices] = {}
    rule = _latency(series)
    _feed(series, ROUTE, [0.05] * 500, T0, BASELINE_S)  # the baseline: 50 ms
    _feed(series, ROUTE, [0.05] * 50 + [0.4] * 50, T0 + BASELINE_S, WINDOW_S)
    reading = _only(list(rule.readings(T0 + BASELINE_S + WINDOW_S)))
    assert reading.threshold == pytest.approx(0.15, rel=0.02)  # 3 x 50 ms
    assert reading.value > reading.threshold
    assert "3x its baseline p99 of 50 ms" in reading.message


def test_the_same_latency_as_the_baseline_is_no_breach() -> None:
    series: dict[str, Slices] = {}
    rule = _latency(series, fixed_s=2.0)
    rng = random.Random(1)
    _feed(series, ROUTE, [rng.uniform(0.02, 0.3) for _ in range(1100)], T0, 110.0)
    reading = _only(list(rule.readings(T0 + 110.0)))
    assert reading.value <= reading.threshold


def test_small_latencies_need_to_pass_the_jump_minimum() -> None:
    series: dict[str, Slices] = {}
    rule = _latency(series, jump_min_s=0.25)
    _feed(series, ROUTE, [0.001] * 500, T0, BASELINE_S)
    _feed(series, ROUTE, [0.02] * 100, T0 + BASELINE_S, WINDOW_S)  # 20x, but only 20 ms
    reading = _only(list(rule.readings(T0 + BASELINE_S + WINDOW_S)))
    assert reading.threshold == 0.25 and reading.value < reading.threshold


def test_one_slow_stretch_in_the_baseline_does_not_become_the_baseline() -> None:
    series: dict[str, Slices] = {}
    rule = _latency(series)
    _feed(series, ROUTE, [0.05] * 500, T0, BASELINE_S)
    _feed(series, ROUTE, [2.0] * 50, T0 + 40, 8.0)  # one bad stretch, inside one coarse part
    _feed(series, ROUTE, [0.5] * 100, T0 + BASELINE_S, WINDOW_S)
    reading = _only(list(rule.readings(T0 + BASELINE_S + WINDOW_S)))
    assert reading.threshold == pytest.approx(0.15, rel=0.02)  # the median part's p99: 50 ms


def test_too_few_samples_give_no_reading() -> None:
    series: dict[str, Slices] = {}
    rule = _latency(series, fixed_s=0.1)
    _feed(series, ROUTE, [5.0] * 19, T0, WINDOW_S)
    assert list(rule.readings(T0 + WINDOW_S)) == []


def test_no_baseline_yet_and_no_fixed_threshold_give_no_reading() -> None:
    series: dict[str, Slices] = {}
    rule = _latency(series)
    _feed(series, ROUTE, [5.0] * 100, T0, WINDOW_S)
    assert list(rule.readings(T0 + WINDOW_S)) == []


def test_each_route_is_judged_alone_and_idle_routes_are_forgotten() -> None:
    series: dict[str, Slices] = {}
    rule = LatencyRule(TTFT, series, 1.0, None, 0.0, min_samples=20)
    _feed(series, "/v1/completions", [0.1] * 50, T0, WINDOW_S)
    _feed(series, ROUTE, [3.0] * 50, T0, WINDOW_S)
    readings = {r.key: r for r in rule.readings(T0 + WINDOW_S)}
    assert readings[AlertKey.of(TTFT, route=ROUTE)].value > 1.0
    assert readings[AlertKey.of(TTFT, route="/v1/completions")].value < 1.0
    assert "TTFT" in readings[AlertKey.of(TTFT, route=ROUTE)].message
    list(rule.readings(T0 + 2 * (WINDOW_S + BASELINE_S) + 20))
    assert series == {}


def _cost_rule(series: dict[str, Slices]) -> CostRule:
    return CostRule(series, mad_factor=5.0, min_increase=0.5, min_samples=20)


def test_a_tenant_whose_requests_suddenly_cost_far_more_is_an_anomaly() -> None:
    series: dict[str, Slices] = {}
    rule = _cost_rule(series)
    for tenant in ("acme", "globex"):
        _feed(series, tenant, [1e-5] * 200, T0, BASELINE_S)
    _feed(series, "acme", [1e-3] * 40, T0 + BASELINE_S, WINDOW_S)
    _feed(series, "globex", [1e-5] * 40, T0 + BASELINE_S, WINDOW_S)
    readings = {r.key: r for r in rule.readings(T0 + BASELINE_S + WINDOW_S)}
    acme = readings[AlertKey.of(COST, tenant="acme")]
    globex = readings[AlertKey.of(COST, tenant="globex")]
    # every baseline request cost the same (MAD 0): the +50% floor sets the threshold
    assert acme.threshold == pytest.approx(1.5e-5, rel=0.02)
    assert acme.value == pytest.approx(1e-3, rel=0.01) and acme.value > acme.threshold
    assert globex.value <= globex.threshold
    assert "tenant acme" in acme.message


def test_cost_within_a_spread_baseline_is_normal_and_far_outside_it_is_not() -> None:
    rng = random.Random(3)
    baseline = [rng.gauss(1.0, 0.1) for _ in range(400)]  # MAD ~0.067 -> sigma ~0.1
    for current, breached in ((1.4, False), (1.9, True)):
        series: dict[str, Slices] = {}
        rule = _cost_rule(series)
        _feed(series, "acme", baseline, T0, BASELINE_S)
        _feed(series, "acme", [current] * 40, T0 + BASELINE_S, WINDOW_S)
        reading = _only(list(rule.readings(T0 + BASELINE_S + WINDOW_S)))
        # median 1.0 + 5 x 1.4826 x MAD ~= 1.5; the +50% floor is 1.5 too
        assert reading.threshold == pytest.approx(1.5, rel=0.05)
        assert (reading.value > reading.threshold) is breached


def test_a_few_expensive_requests_do_not_move_the_median() -> None:
    series: dict[str, Slices] = {}
    rule = _cost_rule(series)
    _feed(series, "acme", [1e-5] * 200, T0, BASELINE_S)
    _feed(series, "acme", [1e-5] * 35 + [1.0] * 5, T0 + BASELINE_S, WINDOW_S)
    reading = _only(list(rule.readings(T0 + BASELINE_S + WINDOW_S)))
    assert reading.value <= reading.threshold


def test_cost_needs_samples_in_both_the_window_and_the_baseline() -> None:
    series: dict[str, Slices] = {}
    rule = _cost_rule(series)
    _feed(series, "acme", [1e-3] * 100, T0, WINDOW_S)
    assert list(rule.readings(T0 + WINDOW_S)) == []
