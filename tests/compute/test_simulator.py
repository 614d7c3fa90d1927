"""The simulator on cases worked out by hand, and against the real engine's own schedule."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from strata.compute.simulator import SimEngine, SimRequest, simulate
from strata.compute.step_time import StepShape, StepTimeModel
from strata.config import EngineSettings
from strata.engine.builder import build_core
from strata.engine.request import Request
from strata.engine.sampling_params import SamplingParams

STEP = StepTimeModel({"base": 0.1})  # every step 100 ms, whatever it computes


def engine(cap: int = 8, **overrides: object) -> SimEngine:
    values: dict[str, object] = {
        "max_num_seqs": cap,
        "token_budget": 512,
        "batch_window_s": 0.0,
        "block_size": 16,
        "num_blocks": 1000,
        "max_model_len": 4096,
        "max_waiting": 256,
        **overrides,
    }
    return SimEngine(**values)  # type: ignore[arg-type]


def test_one_request_waits_one_prefill_step_for_its_first_token() -> None:
    model = StepTimeModel({"base": 0.1, "tokens": 0.001})
    run = simulate([SimRequest(0.0, 50, 4)], engine(), model)
    record = run.records[0]
    assert record.ttft == pytest.approx(0.1 + 50 * 0.001)  # the prefill step
    assert record.e2e == pytest.approx(0.15 + 3 * 0.101)  # then three decode steps
    assert record.output_tokens == 4 and len(record.token_times) == 4
    assert [shape.tokens for _, shape in run.steps] == [50, 1, 1, 1]


def test_latencies_count_from_the_arrival() -> None:
    record = simulate([SimRequest(1.5, 20, 2)], engine(), STEP).records[0]
    assert record.sent == 1.5
    assert record.ttft == pytest.approx(0.1) and record.e2e == pytest.approx(0.2)


def test_under_a_cap_of_one_the_second_request_queues_behind_the_first() -> None:
    requests = [SimRequest(0.0, 20, 3), SimRequest(0.0, 20, 3)]
    first, second = simulate(requests, engine(cap=1), STEP).records
    assert first.ttft == pytest.approx(0.1) and first.e2e == pytest.approx(0.3)
    assert second.ttft == pytest.approx(0.4) and second.e2e == pytest.approx(0.6)
    both = simulate(requests, engine(cap=2), STEP).records
    assert [r.ttft for r in both] == pytest.approx([0.1, 0.1])


def test_a_prompt_over_the_token_budget_is_prefilled_in_chunks() -> None:
    run = simulate([SimRequest(0.0, 100, 1)], engine(token_budget=40), STEP)
    assert [shape.tokens for _, shape in run.steps] == [40, 40, 20]
    assert run.records[0].ttft == pytest.approx(0.3)


def test_a_request_arriving_mid_step_joins_the_next_step() -> None:
    requests = [SimRequest(0.0, 20, 5), SimRequest(0.05, 20, 2)]
    run = simulate(requests, engine(), STEP)
    assert run.records[1].ttft == pytest.approx(0.2 - 0.05)
    assert run.steps[1] == (pytest.approx(0.1), StepShape(21, 2, 32, 400))


def test_an_idle_engine_waits_out_the_batching_window() -> None:
    requests = [SimRequest(0.0, 20, 2), SimRequest(0.02, 20, 2)]
    run = simulate(requests, engine(batch_window_s=0.05), STEP)
    assert run.steps[0][0] == pytest.approx(0.05)  # one step for both, at the window's end
    assert [r.ttft for r in run.records] == pytest.approx([0.15, 0.13])


def test_the_window_ends_early_once_the_cap_is_reached() -> None:
    requests = [SimRequest(0.0, 20, 2), SimRequest(0.01, 20, 2)]
    run = simulate(requests, engine(cap=2, batch_window_s=1.0), STEP)
    assert run.steps[0][0] == pytest.approx(0.01)


def test_the_window_does_not_hold_back_a_running_batch() -> None:
    requests = [SimRequest(0.0, 20, 5), SimRequest(0.17, 20, 1)]
    run = simulate(requests, engine(batch_window_s=0.05), STEP)
    # Request 0 waits out the window (no company comes): steps start at 0.05, 0.15, 0.25, ...
    # Request 1 joins the step at 0.25 at once, without a window of its own.
    assert run.records[0].ttft == pytest.approx(0.15)
    assert run.records[1].ttft == pytest.approx(0.35 - 0.17)


def test_the_queue_bound_refuses_with_503() -> None:
    requests = [SimRequest(0.0, 20, 2)] * 3
    records = simulate(requests, engine(cap=1, max_waiting=1), STEP).records
    assert records[0].ok
    assert [r.error for r in records[1:]] == ["503", "503"]


def test_a_request_longer_than_the_context_is_refused_with_400() -> None:
    records = simulate([SimRequest(0.0, 100, 50)], engine(max_model_len=128), STEP).records
    assert records[0].error == "400" and not records[0].ok


def test_a_shared_prefix_is_served_by_the_prefix_cache() -> None:
    model = StepTimeModel({"base": 0.1, "tokens": 0.01})
    requests = [
        SimRequest(0.0, 40, 1, shared_prefix_tokens=32),
        SimRequest(1.0, 40, 1, shared_prefix_tokens=32),
    ]
    first, second = simulate(requests, engine(), model).records
    assert first.ttft == pytest.approx(0.1 + 40 * 0.01)
    assert second.ttft == pytest.approx(0.1 + 8 * 0.01)  # two 16-token blocks were cached


def test_requests_finish_when_the_kv_pool_forces_preemption() -> None:
    # 6 blocks of 16 tokens hold 96; two requests grow to 60 tokens (4 blocks) each.
    requests = [SimRequest(0.0, 40, 20), SimRequest(0.0, 40, 20)]
    run = simulate(requests, engine(num_blocks=6), STEP)
    assert all(r.ok and r.output_tokens == 20 for r in run.records)
    recomputed = sum(shape.tokens for _, shape in run.steps)
    assert recomputed > 2 * (40 + 19)  # the preempted request computed its tokens again


def test_jitter_scales_steps_by_the_measured_ratios() -> None:
    model = StepTimeModel({"base": 0.1}, ratios=(2.0,))
    record = simulate([SimRequest(0.0, 20, 1)], engine(), model, random.Random(0)).records[0]
    assert record.ttft == pytest.approx(0.2)


def test_the_simulated_schedule_is_the_real_engines(tiny_llama_folder: Path) -> None:
    """The real engine core and the simulator, same requests queued at once: the same steps."""
    settings = EngineSettings(
        model=str(tiny_llama_folder),
        max_model_len=256,
        kv_cache_memory="8MiB",
        max_num_seqs=3,
        max_num_batched_tokens=64,
    )
    core, _ = build_core(settings, tiny_llama_folder)
    rng = random.Random(3)
    lengths = [(rng.randint(5, 150), rng.randint(1, 12)) for _ in range(7)]
    real: list[StepShape] = []
    core.step_observers.append(lambda out, _: real.append(StepShape.of(out, 16)))
    for number, (prompt, output) in enumerate(lengths):
        ids = [rng.randrange(100, 40_000) for _ in range(prompt)]
        params = SamplingParams(max_tokens=output, ignore_eos=True, min_tokens=output)
        core.add(Request(f"r{number}", ids, params))
    while core.has_work:
        core.step()
    c = core.config
    sim = SimEngine(
        c.max_num_seqs,
        c.max_num_batched_tokens,
        0.0,
        c.block_size,
        c.num_blocks,
        c.max_model_len,
        c.max_waiting,
    )
    run = simulate([SimRequest(0.0, p, o) for p, o in lengths], sim, STEP)
    assert [shape for _, shape in run.steps] == real
    assert [r.output_tokens for r in run.records] == [o for _, o in lengths]
