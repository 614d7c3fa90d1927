"""The batching planner: traffic as `strata bench serve` sends it, and a recommendation that
respects the SLO."""

from __future__ import annotations

import itertools

import pytest

from strata.bench.shapes import ConstantRate, PoissonRate
from strata.bench.slo import Slo
from strata.bench.workload import Fixed, Uniform, Workload
from strata.compute.batching import Candidate, Traffic, plan_batching, predict
from strata.compute.profile import EngineProfile, EngineSizes
from strata.compute.step_time import StepShape, StepTimeModel


def profile(max_batch: int = 8) -> EngineProfile:
    sizes = EngineSizes(
        block_size=16,
        num_blocks=4000,
        max_model_len=2048,
        max_num_seqs=max_batch,
        max_num_batched_tokens=256,
        max_waiting=64,
    )
    model = StepTimeModel({"base": 0.1, "tokens": 0.001})
    return EngineProfile(sizes, model, [(StepShape(max_batch, max_batch, 0, 0), 0.1)])


def traffic(rate: float = 2.0, requests: int = 40) -> Traffic:
    return Traffic(Workload(Fixed(20), Fixed(10), seed=3), ConstantRate(rate), requests)


def test_traffic_is_the_load_generators_arrivals_and_lengths() -> None:
    workload = Workload(Uniform(10, 90), Uniform(5, 50), shared_prefix_tokens=8, seed=5)
    shape = PoissonRate(3.0, seed=5)
    requests = Traffic(workload, shape, 25).sim_requests()
    assert [r.arrival_s for r in requests] == list(itertools.islice(shape.arrivals(), 25))
    for index, r in enumerate(requests):
        spec = workload.request(index)
        assert (r.prompt_tokens, r.output_tokens) == (8 + spec.prompt_tokens, spec.output_tokens)
        assert r.shared_prefix_tokens == 8


def test_at_rate_keeps_the_seed_and_the_workload() -> None:
    base = Traffic(Workload(seed=9), PoissonRate(1.0, seed=9), 10)
    faster = base.at_rate(4.0)
    assert faster.arrivals == PoissonRate(4.0, seed=9) and faster.workload == base.workload


def test_predict_summarizes_like_the_load_generator() -> None:
    summary = predict(profile(), traffic(rate=0.5, requests=5), Candidate(8, 0.0), 256)
    # Alone on the engine, each request: one 120 ms prefill step, then nine 101 ms decodes.
    assert summary.succeeded == 5 and summary.output_tokens == 50
    assert summary.ttft_ms.p95 == pytest.approx(120.0)
    assert summary.e2e_ms.p50 == pytest.approx(120.0 + 9 * 101.0)


def test_the_recommendation_holds_the_slo_and_serves_the_most() -> None:
    slo = Slo(ttft_ms=500)
    candidates = [Candidate(1, 0.0), Candidate(8, 0.0), Candidate(8, 0.05)]
    plan = plan_batching(profile(), traffic(), slo, candidates, 256)
    by_candidate = {p.candidate: p for p in plan.predictions}
    cap1, cap8 = by_candidate[Candidate(1, 0.0)], by_candidate[Candidate(8, 0.0)]
    assert not cap1.holds  # one at a time: ~1 req/s of service for 2 req/s offered
    assert cap1.summary.ttft_ms.p95 > 500
    assert cap8.holds and cap8.summary.ttft_ms.p95 <= 500
    assert (cap1.capacity or 0) < 2.0 < (cap8.capacity or 0)
    best = plan.recommended
    assert best is not None and best.holds and best.candidate.cap == 8
    # The most capacity among those that hold; among equals, the lowest p95 TTFT.
    holding = [p for p in plan.predictions if p.holds]
    assert best.capacity == max(p.capacity or 0 for p in holding)
    tied = [p for p in holding if p.capacity == best.capacity]
    assert best.summary.ttft_ms.p95 == min(p.summary.ttft_ms.p95 for p in tied)


def test_no_recommendation_when_nothing_holds() -> None:
    slo = Slo(ttft_ms=50)  # shorter than one 100 ms step
    plan = plan_batching(profile(), traffic(), slo, [Candidate(4, 0.0), Candidate(8, 0.0)], 256)
    assert plan.recommended is None
    assert all(not p.holds and p.capacity is None for p in plan.predictions)


def test_an_e2e_slo_is_held_too() -> None:
    slo = Slo(ttft_ms=5000, e2e_ms=500)  # ten tokens take over a second
    plan = plan_batching(profile(), traffic(), slo, [Candidate(8, 0.0)], 256)
    assert plan.recommended is None
