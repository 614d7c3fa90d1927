"""The pieces of `strata bench engine` that decide what is measured."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from strata.bench import engine as bench
from strata.bench.records import RequestRecord


@pytest.fixture(autouse=True)
def _bundled_model_in_test_cache(smollm2_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench, "MODEL_CACHE", smollm2_folder.parent)


def test_chat_workload_matches_the_documented_shape() -> None:
    requests = bench.chat_workload(32)
    assert [r.output_len for r in requests[:8]] == list(bench.OUTPUT_CYCLE)
    assert sum(r.output_len for r in requests) == 2656
    lengths = [len(r.prompt_token_ids) for r in requests]
    assert min(lengths) >= 20 and max(lengths) <= 125  # one word may overshoot a little
    assert len(set(lengths)) > 10
    assert all(r.arrival_s == 0.0 for r in requests)
    assert bench.chat_workload(32) == requests  # seeded: the same every run
    assert bench.chat_workload(32, seed=1) != requests


def test_poisson_arrivals_are_increasing_and_average_the_rate() -> None:
    times = bench.poisson_arrivals(4000, rate=5.0, seed=3)
    assert all(b > a for a, b in itertools.pairwise(times))
    assert times[-1] / len(times) == pytest.approx(0.2, rel=0.05)


def test_summary_counts_tokens_over_the_wall_time() -> None:
    records = [
        RequestRecord(sent=0.0, first_token=0.5, finished=2.0, output_tokens=10),
        RequestRecord(sent=0.0, first_token=1.0, finished=4.0, output_tokens=30),
    ]
    s = bench.summarize(records)
    assert s["tok_s"] == 10.0 and s["wall_s"] == 4.0
    assert s["ttft_p50_s"] == 0.5 and s["ttft_p95_s"] == 1.0
    assert s["e2e_p95_s"] == 4.0
