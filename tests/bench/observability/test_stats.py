"""The observability benchmark's statistics on synthetic data: paired ratios, the bootstrap
interval and its verdict, matching client and strata TTFTs by request id, and histogram
quantiles from two scrapes."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from strata.bench.observability.stats import (
    Agreement,
    Interval,
    Overhead,
    bootstrap_median_interval,
    histogram_count,
    histogram_quantile,
    match_by_request_id,
    paired_ratios,
    verdict,
)
from strata.bench.records import RequestRecord


def test_paired_ratios_divide_each_run_by_its_partner() -> None:
    assert paired_ratios([99.0, 102.0, 50.0], [100.0, 100.0, 25.0]) == [0.99, 1.02, 2.0]


@pytest.mark.parametrize(("treated", "baseline"), [([1.0], [1.0, 2.0]), ([1.0], [0.0])])
def test_ratios_need_whole_pairs_with_a_baseline(
    treated: list[float], baseline: list[float]
) -> None:
    with pytest.raises(ValueError):
        paired_ratios(treated, baseline)


def test_the_bootstrap_interval_holds_the_median_and_is_reproducible() -> None:
    rng = random.Random(1)
    values = [rng.gauss(0.99, 0.02) for _ in range(12)]
    interval = bootstrap_median_interval(values, seed=3)
    assert interval.low <= statistics.median(values) <= interval.high
    assert interval == bootstrap_median_interval(values, seed=3)
    assert min(values) <= interval.low < interval.high <= max(values)


def test_more_pairs_give_a_narrower_interval() -> None:
    rng = random.Random(2)
    few = [rng.gauss(1.0, 0.05) for _ in range(10)]
    many = [rng.gauss(1.0, 0.05) for _ in range(400)]
    width = [(i.high - i.low) for i in map(bootstrap_median_interval, (few, many))]
    assert width[1] < width[0] / 3


def test_a_single_value_is_its_own_interval() -> None:
    assert bootstrap_median_interval([0.97]) == Interval(0.97, 0.97)


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (Interval(0.985, 1.01), "holds"),
        (Interval(0.95, 0.975), "fails"),
        (Interval(0.97, 1.00), "inconclusive"),
        (Interval(0.98, 0.99), "inconclusive"),  # touching the bound is not clearing it
    ],
)
def test_the_verdict_needs_the_whole_interval_on_one_side(
    interval: Interval, expected: str
) -> None:
    assert verdict(interval, 0.02) == expected


def test_overhead_of_paired_ratios() -> None:
    ratios = [0.995, 1.003, 0.998, 1.001, 0.997, 0.999, 1.002, 0.996, 1.0, 0.998]
    overhead = Overhead.of(ratios, 0.02)
    assert overhead.median_ratio == pytest.approx(0.9985)
    assert overhead.median_overhead == pytest.approx(0.0015)
    assert overhead.verdict == "holds" and overhead.ratios == tuple(ratios)
    assert Overhead.of([r - 0.05 for r in ratios], 0.02).verdict == "fails"


def _record(rid: str | None, ttft_s: float | None, error: str | None = None) -> RequestRecord:
    first = None if ttft_s is None else 10.0 + ttft_s
    return RequestRecord(sent=10.0, first_token=first, finished=11.0, error=error, request_id=rid)


def test_requests_are_matched_by_request_id() -> None:
    records = [
        _record("a", 0.100),
        _record("b", 0.200),
        _record("c", 0.300),  # no ledger row
        _record(None, 0.400),  # the server sent no x-request-id
        _record("d", 0.500, error="503"),  # failed: not compared at all
    ]
    strata = {"a": 98.0, "b": 196.5, "d": 1.0}
    matched = match_by_request_id(records, strata, {"a": 90.0})
    assert [(p.request_id, p.engine_ms) for p in matched.pairs] == [("a", 90.0), ("b", None)]
    assert [p.difference_ms for p in matched.pairs] == pytest.approx([2.0, 3.5])
    assert matched.unmatched == 2


def test_a_ledger_row_without_ttft_counts_as_unmatched() -> None:
    matched = match_by_request_id([_record("a", 0.1)], {"a": None})
    assert matched.pairs == () and matched.unmatched == 1


def test_agreement_reports_both_sides_and_the_differences() -> None:
    records = [_record(f"r{i}", (100 + i) / 1000) for i in range(20)]
    strata = {f"r{i}": 100.0 + i - (2.0 if i < 19 else 40.0) for i in range(20)}
    engine = {f"r{i}": 100.0 + i - 10.0 for i in range(20)}
    agreement = Agreement.of(match_by_request_id(records, strata, engine))
    assert agreement.pairs == 20 and agreement.unmatched == 0
    assert agreement.client_p50_ms == pytest.approx(109.0)
    assert agreement.strata_p50_ms == pytest.approx(106.0)  # nearest rank, the outlier included
    assert agreement.difference_p50_ms == pytest.approx(2.0)
    assert agreement.difference_p95_ms == pytest.approx(2.0)  # the one 40 ms outlier is p100
    assert agreement.gateway_minus_engine_p50_ms == pytest.approx(8.0)
    assert agreement.within(5.0) and not agreement.within(1.0)


def test_without_engine_timings_the_engine_columns_are_empty() -> None:
    agreement = Agreement.of(match_by_request_id([_record("a", 0.1)], {"a": 99.0}))
    assert agreement.engine_p50_ms is None and agreement.gateway_minus_engine_p50_ms is None
    empty = Agreement.of(match_by_request_id([], {}))
    assert empty.pairs == 0 and math.isnan(empty.difference_p50_ms)


def _scrape(observations: list[float]) -> str:
    registry = CollectorRegistry()
    histogram = Histogram("strata:ttft_seconds", "t", buckets=(0.1, 0.2, 0.4),
                          registry=registry)  # fmt: skip
    for value in observations:
        histogram.observe(value)
    return generate_latest(registry).decode()


def test_a_histograms_quantile_counts_only_what_it_saw_between_two_scrapes() -> None:
    before = _scrape([0.05] * 10)  # long before: all under 0.1 s
    after = _scrape([0.05] * 10 + [0.15] * 4)  # between the scrapes: 4 in (0.1, 0.2]
    assert histogram_quantile(0.5, before, after, "strata:ttft_seconds") == pytest.approx(0.15)
    assert histogram_quantile(0.5, after, after, "strata:ttft_seconds") is None
    assert histogram_count(after, "strata:ttft_seconds") == 14
    assert histogram_count(after, "strata:nothing_seconds") == 0
