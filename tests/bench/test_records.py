"""Per-request latencies and the percentile rule, on hand-made records."""

from __future__ import annotations

import math

import pytest

from strata.bench.records import RequestRecord, percentile


def test_latencies_of_one_streamed_request() -> None:
    record = RequestRecord(
        sent=10.0, first_token=10.2, finished=10.9, token_times=[10.2, 10.3, 10.6], output_tokens=3
    )
    assert record.ok
    assert record.ttft == pytest.approx(0.2) and record.e2e == pytest.approx(0.9)
    assert record.itls == pytest.approx([0.1, 0.3])
    assert record.mean_itl == pytest.approx(0.2)


def test_mean_itl_divides_by_tokens_when_a_chunk_carries_several() -> None:
    # two chunks, five tokens: four gaps between tokens in 0.4 s
    record = RequestRecord(
        sent=0.0, first_token=1.0, finished=1.5, token_times=[1.0, 1.4], output_tokens=5
    )
    assert record.itls == pytest.approx([0.4])
    assert record.mean_itl == pytest.approx(0.1)


def test_a_failed_or_single_token_request_has_no_itl() -> None:
    assert RequestRecord(sent=0.0, error="503").mean_itl is None
    assert not RequestRecord(sent=0.0, error="503").ok
    one = RequestRecord(sent=0.0, first_token=1.0, finished=1.0, token_times=[1.0], output_tokens=1)
    assert one.itls == [] and one.mean_itl is None


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 95) == 95
    assert percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([3.0, 1.0, 2.0], 50) == 2  # unsorted input
    assert math.isnan(percentile([], 50))
