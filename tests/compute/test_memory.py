"""The GPU memory planner against hand-computed cases."""

from __future__ import annotations

from dataclasses import replace

import pytest

from strata.compute.gpus import Gpu, find_gpu
from strata.compute.memory import (
    MemoryInputs,
    RuntimeAssumptions,
    compute_plan,
    plan_memory,
)
from strata.compute.models import load_model
from strata.compute.precision import weight_precision
from strata.compute.units import GiB, KiB
from strata.errors import ConfigError


def inputs(model: str = "llama-3-70b", weights: str = "int4", gpu: str = "a100-80gb",
           context: int = 8192, **kw: object) -> MemoryInputs:  # fmt: skip
    return MemoryInputs(load_model(model), weight_precision(weights), str(kw.pop("kv", "fp16")),
                        find_gpu(gpu), context, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_llama_3_8b_fp16_weights_are_16_06_gb_and_kv_128_kib_per_token() -> None:
    plan = plan_memory(inputs("llama-3-8b", "fp16", "h100-80gb"))
    assert plan.weights.total_bytes == 8_030_261_248 * 2
    assert round(plan.weights.total_bytes / 1e9, 2) == 16.06
    assert plan.kv.bytes_per_token == 128 * KiB
    assert plan.kv.bytes_per_request == 8192 * 128 * KiB  # 1 GiB at 8K tokens


def test_llama_3_70b_kv_is_320_kib_per_token() -> None:
    assert plan_memory(inputs()).kv.bytes_per_token == 320 * KiB


def test_int4_weights_of_llama_3_70b_are_about_40_gb() -> None:
    w = plan_memory(inputs()).weights
    matrices = 68_451_041_280 * (4 + 20 / 128) / 8
    assert w.quantized_bytes == pytest.approx(matrices, abs=1)
    assert w.unquantized_bytes == (2 * 1_050_673_152 + 1_318_912) * 2  # fp16 embeddings, norms
    assert 39.7e9 < w.total_bytes < 39.9e9


def test_tensor_parallelism_halves_per_gpu_weights_and_kv() -> None:
    one, two = plan_memory(inputs()), plan_memory(inputs(tp=2))
    norms = one.weights.params.other * 2  # replicated on every GPU
    assert two.weights.per_gpu_bytes - norms == pytest.approx(
        (one.weights.per_gpu_bytes - norms) / 2, abs=1
    )
    assert two.kv.bytes_per_token_per_gpu == one.kv.bytes_per_token_per_gpu // 2
    assert two.kv.bytes_per_token == one.kv.bytes_per_token  # the model's total is unchanged
    assert two.max_concurrency > 2 * one.max_concurrency  # and more room is left per GPU


def test_more_gpus_than_kv_heads_replicate_them() -> None:
    plan = plan_memory(inputs("qwen2.5-7b", "fp16", tp=4))
    assert plan.kv.kv_heads_per_gpu == 1  # 4 KV heads over 4 GPUs
    wide = plan_memory(inputs("llama-3-70b", "fp16", tp=16))
    assert wide.kv.kv_heads_per_gpu == 1  # 8 KV heads over 16 GPUs: one copy each


def test_blocks_follow_from_a_budget_built_by_hand() -> None:
    """A custom GPU holding exactly the weights, the step reserve and 10 blocks (+ slack
    smaller than a block) gets exactly 10 blocks and, at 8 blocks a request, 1 request."""
    model = load_model("smollm2-135m")
    runtime = RuntimeAssumptions(overhead_bytes=0, max_batched_tokens=1, max_num_seqs=1,
                                 fragmentation=0.0)  # fmt: skip
    weights = 134_515_008 * 2  # fp16, tied embeddings
    activations = (2 * 576 + 3 * 1536) * 2  # one token
    logits = 49152 * 8  # one sequence, fp32 logits + probabilities
    block = 16 * 2 * 30 * 3 * 64 * 2  # 16 tokens of fp16 K and V
    memory = weights + activations + logits + 10 * block + block - 1
    plan = plan_memory(MemoryInputs(model, weight_precision("fp16"), "fp16",
                                    Gpu("custom", "t", memory), 128, utilization=1.0,
                                    runtime=runtime))  # fmt: skip
    assert plan.weights.per_gpu_bytes == weights
    assert (plan.reserve.activations, plan.reserve.logits) == (activations, logits)
    assert plan.num_blocks == 10
    assert plan.kv.blocks_per_request == 8 and plan.max_concurrency == 1


def test_fragmentation_and_utilization_shrink_the_pool() -> None:
    base = compute_plan(inputs())
    fragmented = compute_plan(replace(inputs(), runtime=RuntimeAssumptions(fragmentation=0.5)))
    assert fragmented.kv_pool == pytest.approx(
        (base.kv_pool + base.reserve.fragmentation) / 2, abs=1
    )
    assert compute_plan(inputs(utilization=0.8)).kv_pool < base.kv_pool


def test_requests_round_up_to_whole_blocks() -> None:
    assert plan_memory(inputs(context=8191)).kv.blocks_per_request == 512
    assert plan_memory(inputs(context=8177)).kv.blocks_per_request == 512
    assert plan_memory(inputs(context=8176)).kv.blocks_per_request == 511
    assert plan_memory(inputs(context=8192, block_size=32)).kv.blocks_per_request == 256


def test_the_seeds_case_fits_eight_and_says_by_how_much() -> None:
    plan = plan_memory(inputs(concurrency=8))
    check = plan.check(8)
    assert check.fits and plan.max_concurrency >= 8
    assert check.blocks_needed == 8 * 512
    assert check.spare_bytes == (plan.num_blocks - 4096) * 16 * 320 * KiB


def test_too_many_requests_spill_by_a_stated_amount() -> None:
    plan = plan_memory(inputs(concurrency=40))
    check = plan.check(40)
    assert not check.fits and check.spare_blocks == plan.num_blocks - 40 * 512


def test_fp16_70b_does_not_fit_one_a100() -> None:
    plan = plan_memory(inputs(weights="fp16"))
    assert plan.shortfall > 60e9 and plan.num_blocks == 0 and plan.max_concurrency == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tp": 3}, "--tp 3 cannot split 64 attention heads"),
        ({"tp": 0}, "--tp must be at least 1"),
        ({"context": 10_000}, "--context 10000: Llama-3-70B takes 1 to 8192"),
        ({"utilization": 0.0}, "--gpu-memory-utilization 0.0 must be in"),
        ({"block_size": 0}, "--block-size"),
        ({"concurrency": 0}, "--concurrency"),
        ({"runtime": RuntimeAssumptions(fragmentation=1.0)}, "--fragmentation 1.0"),
        ({"runtime": RuntimeAssumptions(max_batched_tokens=0)}, "--max-batched-tokens"),
    ],
)
def test_bad_inputs_name_the_option(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_memory(replace(inputs(), **change))  # type: ignore[arg-type]


def test_runtime_overhead_moves_the_pool_byte_for_byte_before_fragmentation() -> None:
    no_frag = RuntimeAssumptions(fragmentation=0.0)
    a = compute_plan(replace(inputs(), runtime=no_frag))
    b = compute_plan(
        replace(inputs(), runtime=replace(no_frag, overhead_bytes=no_frag.overhead_bytes + GiB))
    )
    assert a.kv_pool - b.kv_pool == GiB
