"""`--explain`: the arithmetic shown, and "what it would take" found at the real boundary."""

from __future__ import annotations

from dataclasses import replace

from strata.compute.explain import (
    explain_memory,
    observed_spill,
    spill_gap,
    what_it_would_take,
)
from strata.compute.gpus import find_gpu
from strata.compute.memory import MemoryInputs, RuntimeAssumptions, compute_plan, plan_memory
from strata.compute.memory_report import memory_lines
from strata.compute.models import load_model
from strata.compute.precision import weight_precision


def seed_case(**kw: object) -> MemoryInputs:
    """Llama 3 70B in 4-bit on an 80 GB A100 at 8K context, 8 concurrent requests."""
    base = MemoryInputs(load_model("llama-3-70b"), weight_precision("int4"), "fp16",
                        find_gpu("a100-80gb"), 8192, concurrency=8)  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def rows(inputs: MemoryInputs, n: int = 8) -> dict[str, str]:
    return {w.assumption: w.flips_at for w in what_it_would_take(inputs, n)}


def fits(inputs: MemoryInputs, n: int = 8) -> bool:
    return compute_plan(inputs).max_concurrency >= n


def test_the_steps_show_the_operands() -> None:
    text = "\n".join(explain_memory(plan_memory(seed_case())))
    assert "2 (K and V) x 80 layers x 8 KV heads x 128 head_dim x 2 B (fp16) = 327,680 B" in text
    assert "4.156 bits per weight" in text
    assert "ceil(8,192 / 16) = 512 blocks" in text
    assert "--concurrency 8: 8 x 512 = 4,096 blocks" in text


def test_the_context_row_is_the_exact_boundary() -> None:
    plan = compute_plan(seed_case())
    boundary = (plan.num_blocks // 8) * 16 + 1  # the first context at which 8 need too many
    assert rows(seed_case())["context per request"] == f">= {boundary:,} tokens"
    assert fits(seed_case(context=boundary - 1)) and not fits(seed_case(context=boundary))


def test_fp32_kv_would_spill_the_seeds_eight_but_fp8_would_not() -> None:
    assert rows(seed_case())["KV-cache dtype"] == "fp32"
    assert not fits(seed_case(kv_dtype="fp32"))


def test_fragmentation_and_utilization_rows_sit_on_the_boundary() -> None:
    table = rows(seed_case())
    frag = float(table["fragmentation of free memory"].removeprefix(">= ").rstrip("%")) / 100
    assert not fits(seed_case(runtime=RuntimeAssumptions(fragmentation=frag)))
    assert fits(seed_case(runtime=RuntimeAssumptions(fragmentation=frag - 0.0001)))
    util = float(table["GPU memory utilization"].removeprefix("<= "))
    assert not fits(seed_case(utilization=util)) and fits(seed_case(utilization=util + 0.0001))


def test_no_single_plausible_reserve_explains_the_seed() -> None:
    """The seed's spill needs about 13 GB of runtime overhead (vs 0.5-3 GB measured) or
    about 37% fragmentation: the table shows how far each assumption is from plausible."""
    table = rows(seed_case())
    overhead_gb = float(table["runtime overhead (CUDA context, graphs)"].split()[1])
    assert overhead_gb > 10
    assert not fits(seed_case(runtime=RuntimeAssumptions(overhead_bytes=int(overhead_gb * 1e9))))
    assert fits(
        seed_case(runtime=RuntimeAssumptions(overhead_bytes=int(overhead_gb * 1e9) - 10**7))
    )
    assert float(table["fragmentation of free memory"].split()[1].rstrip("%")) > 30


def test_a_plan_that_spills_asks_what_it_would_take_to_fit() -> None:
    inputs = seed_case(concurrency=20)
    lines = "\n".join(memory_lines(plan_memory(inputs), explain=True))
    assert "What it would take for 20 concurrent requests to fit" in lines
    context = rows(inputs, 20)["context per request"]
    limit = int(context.removeprefix("<= ").split()[0].replace(",", ""))
    assert fits(seed_case(context=limit), 20) and not fits(seed_case(context=limit + 1), 20)


def test_spill_gap_names_the_memory_everything_else_would_need() -> None:
    plan = plan_memory(seed_case())
    assert "For 8 requests' KV (21.47 GB per GPU" in spill_gap(plan, 8)


def test_an_observed_spill_says_what_everything_else_must_have_taken() -> None:
    plan = plan_memory(seed_case())
    lines = observed_spill(plan, 18 * 10**9, 8)
    assert "= 2.25 GB each = 6,866 tokens at fp16" in lines[0]
    others = plan.budget - plan.kv_pool
    assert f"{(plan.budget - 18e9 - others) / 1e9:,.2f} GB more than this plan" in lines[1]


def test_an_observed_spill_beyond_the_pool_agrees_with_the_plan() -> None:
    plan = plan_memory(seed_case())
    assert "the spill is what it predicts" in observed_spill(plan, 40 * 10**9, 8)[1]
