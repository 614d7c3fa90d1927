"""The JSON summary and the Markdown page, from a made-up result."""

from __future__ import annotations

import json

from strata.bench.pipeline.report import markdown, summary
from strata.bench.pipeline.run import (
    Backfill,
    Freshness,
    KindCost,
    PipelineResult,
    Plan,
    RateStep,
)


def step(rate: float, p95: float, non_text_embedded: int = 0) -> RateStep:
    costs = {
        "text_edit": KindCost(4, 5, 11, 16),
        "non_text_edit": KindCost(3, non_text_embedded, 0, 12),
        "insert": KindCost(2, 8, 0, 8),
        "delete": KindCost(1, 0, 0, 0),
    }
    freshness = Freshness(int(rate * 10), p95 / 2, p95, p95 * 1.2, p95 * 1.5)
    return RateStep(rate, 10.0, int(rate * 10), 0.3, freshness, costs, writes=int(rate * 2))


def result(*steps: RateStep) -> PipelineResult:
    plan = Plan(documents=100, rates=(5, 10, 20, 40), seconds_per_rate=10)
    return PipelineResult(plan, Backfill(100, 380, 380, 20.0), steps)


def data(result: PipelineResult) -> dict[str, object]:
    return {
        "command": "strata bench pipeline",
        "when": "now",
        "machine": "2 cores",
        **summary(result),
    }


def test_the_highest_rate_stops_at_the_first_miss() -> None:
    run = result(step(5, 0.2), step(10, 0.4), step(20, 1.3), step(40, 0.9))
    assert run.highest_rate_meeting_target == 10
    assert result(step(5, 1.5)).highest_rate_meeting_target is None


def test_the_summary_adds_costs_over_steps_and_is_json() -> None:
    summed = summary(result(step(5, 0.2), step(20, 0.8)))
    json.dumps(summed)
    assert summed["embeddings_by_kind"]["text_edit"] == {
        "changes": 8,
        "embedded": 10,
        "reused": 22,
        "whole_document": 32,
    }
    assert summed["reference_freshness"]["p95_s"] == 0.8
    assert summed["backfill"]["chunks_per_s"] == 19.0
    assert [s["meets_target"] for s in summed["steps"]] == [True, True]


def test_the_page_states_the_numbers_and_the_targets() -> None:
    page = markdown(data(result(step(5, 0.2), step(10, 0.5), step(20, 1.2, non_text_embedded=2))))
    assert "**5.0 documents/s, 19.0 chunks/s**" in page
    assert "p95 **1200 ms**" in page and "Target: p95 under 1 s (**missed**)" in page
    assert "**10 changes/s**" in page
    assert "2 embeddings computed for 9 changes (target 0: **missed**)" in page
    assert "| 20 | 20.0 | 200 | 600 ms | 1200 ms | 1440 ms | 1800 ms | 0.3 s | 5.0 | no |" in page
    assert "| text edit (40%) | 12 | 15 | 33 | 48 | 31.2% |" in page


def test_the_page_says_when_the_reference_rate_was_not_run() -> None:
    page = markdown(data(result(step(5, 0.2))))
    assert "Freshness at 20 changes/s**: not measured" in page
