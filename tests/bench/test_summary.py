"""Throughput, goodput, error counts and the SLO verdict on hand-made records."""

from __future__ import annotations

import math

import pytest

from strata.bench.records import RequestRecord
from strata.bench.slo import Slo
from strata.bench.summary import Distribution, summarize
from strata.errors import ConfigError


def records() -> list[RequestRecord]:
    # Times are sums of powers of two, so every latency below is exact in floating point.
    return [
        RequestRecord(
            0.0, 0.125, 0.375, [0.125, 0.1875, 0.3125], prompt_tokens=10, output_tokens=3
        ),
        RequestRecord(1.0, 1.5, 1.75, [1.5, 1.625], prompt_tokens=12, output_tokens=4),
        RequestRecord(1.5, error="503", error_detail="queue full"),
        RequestRecord(2.0, 2.0625, 2.125, [2.0625], prompt_tokens=5, output_tokens=1),
        RequestRecord(2.5, error="timeout", error_detail="ReadTimeout"),
        RequestRecord(3.0, error="503", error_detail="queue full again"),
    ]


def test_counts_throughputs_and_error_kinds() -> None:
    summary = summarize(records(), duration_s=4.0, slo=None)
    assert (summary.requests, summary.succeeded, summary.failed) == (6, 3, 3)
    assert summary.error_rate == 0.5
    assert summary.errors == {"503": 2, "timeout": 1}
    assert summary.error_examples == {"503": "queue full", "timeout": "ReadTimeout"}
    assert (summary.prompt_tokens, summary.output_tokens) == (27, 8)
    assert summary.request_throughput == 0.75
    assert summary.output_throughput == 2.0
    assert summary.total_throughput == 35 / 4
    assert summary.goodput is None and summary.slo_met is None


def test_latency_percentiles_use_successful_requests_only() -> None:
    summary = summarize(records(), duration_s=4.0, slo=None)
    assert summary.ttft_ms.count == 3
    assert summary.ttft_ms.p50 == 125 and summary.ttft_ms.p95 == 500
    assert summary.ttft_ms.mean == pytest.approx(687.5 / 3)
    assert summary.itl_ms.count == 3  # gaps: 62.5, 125 (first request), 125 (second)
    assert summary.itl_ms.p50 == 125 and summary.itl_ms.p99 == 125
    assert summary.tpot_ms.count == 2  # the one-token request has none
    assert summary.tpot_ms.p99 == 93.75
    assert summary.e2e_ms.p95 == 750


def test_goodput_counts_requests_within_every_threshold() -> None:
    # TTFT ms: 125, 500, 62.5. TPOT ms: 93.75, 41.7, none. E2E ms: 375, 750, 125.
    assert summarize(records(), 4.0, Slo(ttft_ms=200)).slo_met == 2
    assert summarize(records(), 4.0, Slo(ttft_ms=600, itl_ms=50)).slo_met == 2
    assert summarize(records(), 4.0, Slo(e2e_ms=375)).slo_met == 2
    assert summarize(records(), 4.0, Slo(ttft_ms=1000, itl_ms=100, e2e_ms=1000)).slo_met == 3
    summary = summarize(records(), 4.0, Slo(ttft_ms=150, itl_ms=100, e2e_ms=400))
    assert summary.slo_met == 2 and summary.goodput == 0.5


def test_a_run_holds_the_slo_on_p95s_and_the_error_rate() -> None:
    good = [r for r in records() if r.error is None]
    assert Slo(ttft_ms=500).held_by(summarize(good, 4.0, None))
    assert not Slo(ttft_ms=499).held_by(summarize(good, 4.0, None))
    assert Slo(itl_ms=125).held_by(summarize(good, 4.0, None))
    assert not Slo(itl_ms=124).held_by(summarize(good, 4.0, None))
    assert not Slo(ttft_ms=500, e2e_ms=749).held_by(summarize(good, 4.0, None))
    assert not Slo(ttft_ms=10_000).held_by(summarize(records(), 4.0, None))  # 50% errors
    one_bad_in_200 = good * 67 + [RequestRecord(0.0, error="503")]
    assert Slo(ttft_ms=500).held_by(summarize(one_bad_in_200, 4.0, None))
    assert not Slo(ttft_ms=500).held_by(
        summarize(good * 30 + [RequestRecord(0.0, error="503")], 4.0, None)
    )


def test_nothing_succeeded_holds_nothing() -> None:
    failed = [RequestRecord(0.0, error="401")]
    summary = summarize(failed, 1.0, Slo(ttft_ms=1))
    assert not Slo(ttft_ms=1e9).held_by(summary)
    assert math.isnan(summary.ttft_ms.p50) and summary.goodput == 0.0


def test_distribution_of_nothing_is_nan() -> None:
    empty = Distribution.of_seconds([])
    assert empty.count == 0 and math.isnan(empty.mean) and math.isnan(empty.p99)


@pytest.mark.parametrize("kwargs", [{}, {"ttft_ms": 0}, {"itl_ms": -5}])
def test_an_slo_needs_a_positive_threshold(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Slo(**kwargs)
