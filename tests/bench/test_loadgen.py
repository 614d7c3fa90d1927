"""Load runs against the real strata engine server (tiny model): lengths honoured, sends on
schedule, errors counted instead of raised."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from strata.bench.client import ENDPOINTS, Target
from strata.bench.loadgen import pool_size, run_load
from strata.bench.shapes import Budget, ConstantRate, FixedConcurrency, PoissonRate
from strata.bench.slo import Slo
from strata.bench.workload import Fixed, Uniform, Workload
from strata.errors import BenchTargetError
from tests.support.live_server import MODEL, LiveServer

SMALL = Workload(Uniform(8, 24), Uniform(3, 9), seed=5)


async def test_fixed_concurrency_gets_every_requested_length(target: Target) -> None:
    result = await run_load(target, SMALL, FixedConcurrency(4), budget=Budget(requests=12))
    assert result.target.model == MODEL and len(result.records) == 12
    assert result.summary.errors == {} and result.summary.succeeded == 12
    for index, record in enumerate(result.records):
        spec = SMALL.request(index)
        assert record.output_tokens == spec.output_tokens
        assert record.prompt_tokens > spec.prompt_tokens  # plus the chat template's tokens
        assert record.ttft is not None and 0 < record.ttft <= record.e2e  # type: ignore[operator]
    assert result.summary.output_tokens == sum(SMALL.request(i).output_tokens for i in range(12))
    assert result.summary.output_throughput > 0 and result.summary.goodput is None


async def test_completions_with_a_shared_prefix(target: Target) -> None:
    workload = Workload(Fixed(10), Fixed(4), shared_prefix_tokens=40, seed=1)
    completions = replace(target, endpoint=ENDPOINTS["completions"])
    result = await run_load(completions, workload, FixedConcurrency(2), budget=Budget(requests=4))
    assert [r.output_tokens for r in result.records] == [4] * 4
    assert all(r.prompt_tokens >= 50 for r in result.records)


async def test_constant_rate_sends_on_schedule(target: Target) -> None:
    result = await run_load(target, SMALL, ConstantRate(10.0), budget=Budget(requests=6))
    start = result.records[0].sent
    offsets = [record.sent - start for record in result.records]
    assert offsets == pytest.approx([i / 10 for i in range(6)], abs=0.04)
    assert result.summary.succeeded == 6


async def test_a_poisson_run_bounded_by_time_sends_the_planned_arrivals(target: Target) -> None:
    shape = PoissonRate(20.0, seed=3)
    planned = len(list(itertools.takewhile(lambda at: at < 0.5, shape.arrivals())))
    result = await run_load(target, SMALL, shape, budget=Budget(duration_s=0.5))
    assert len(result.records) == planned and result.summary.succeeded == planned


async def test_goodput_with_an_slo(target: Target) -> None:
    slo = Slo(ttft_ms=60_000, e2e_ms=60_000)
    result = await run_load(target, SMALL, FixedConcurrency(2), slo, budget=Budget(requests=4))
    assert result.summary.slo_met == 4
    assert result.summary.goodput == pytest.approx(result.summary.request_throughput)
    assert slo.held_by(result.summary)


async def test_a_wrong_key_records_401s_and_does_not_crash(target: Target) -> None:
    wrong = replace(target, api_key="wrong", model=MODEL)
    result = await run_load(wrong, SMALL, FixedConcurrency(3), budget=Budget(requests=5))
    assert result.summary.errors == {"401": 5} and result.summary.succeeded == 0
    assert all(record.error == "401" for record in result.records)
    with pytest.raises(BenchTargetError):
        await run_load(replace(wrong, model=None), SMALL, FixedConcurrency(1))


async def test_warmup_requests_are_not_measured(target: Target, bench_server: LiveServer) -> None:
    before = bench_server.engine.stats().generation_tokens
    result = await run_load(target, SMALL, FixedConcurrency(2), budget=Budget(requests=2), warmup=3)
    assert len(result.records) == 2
    warm = sum(SMALL.request(-1 - i).output_tokens for i in range(3))
    generated = bench_server.engine.stats().generation_tokens - before
    assert generated == warm + result.summary.output_tokens


def test_the_pool_fits_the_shape() -> None:
    assert pool_size(FixedConcurrency(8), Budget(requests=100)) == 8
    assert pool_size(FixedConcurrency(8), Budget(requests=3)) == 3
    assert pool_size(ConstantRate(5.0), Budget(requests=40)) == 40
    assert pool_size(ConstantRate(5.0), Budget(duration_s=60)) == 512
