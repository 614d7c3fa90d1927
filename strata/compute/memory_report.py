"""What `strata plan memory` prints: a summary table, `--explain` steps, and JSON."""

from __future__ import annotations

from typing import Any

from strata.compute.engine_plan import EnginePlan
from strata.compute.explain import (
    assumptions,
    explain_engine,
    explain_memory,
    observed_spill,
    spill_gap,
    what_it_would_take,
)
from strata.compute.memory import ConcurrencyCheck, KvMemory, MemoryPlan
from strata.compute.tables import table
from strata.compute.units import gb, human


def memory_lines(
    plan: MemoryPlan, explain: bool = False, observed_kv: int | None = None
) -> list[str]:
    """The terminal report for a GPU plan; `observed_kv`: bytes of KV a spill was seen at
    (with `inputs.concurrency` requests)."""
    lines = [*_heading(plan), "", *table(("per GPU", "memory"), _budget_rows(plan), right=(1,)), ""]
    lines += _kv_lines(plan.kv, plan.inputs.context)
    lines += _verdict(plan.max_concurrency, plan.inputs.context, plan.shortfall)
    if plan.inputs.concurrency is not None:
        lines.append(_check_line(plan.check(plan.inputs.concurrency), plan.max_concurrency))
    if explain:
        lines += ["", *explain_memory(plan), "", *_what_it_would_take(plan)]
    if observed_kv is not None and plan.inputs.concurrency is not None:
        lines += ["", *observed_spill(plan, observed_kv, plan.inputs.concurrency)]
    if explain:
        lines += ["", "Assumptions (each one an option):", *(f"  - {a}" for a in assumptions(plan))]
    else:
        lines += ["", "Every reserve above is an assumption; --explain shows the arithmetic."]
    return lines


def _heading(plan: MemoryPlan) -> list[str]:
    i = plan.inputs
    return [
        f"{i.model.name} ({i.model.source}): {i.weights.name} weights, {i.kv_dtype} KV cache, "
        f"{i.context:,}-token context",
        f"on {i.tp} x {i.gpu.label} ({gb(i.gpu.memory_bytes)} each)",
    ]


def _budget_rows(plan: MemoryPlan) -> list[tuple[str, str]]:
    r, i = plan.reserve, plan.inputs
    weights = f"weights ({i.weights.name}, {gb(plan.weights.total_bytes)} in total)"
    return [
        (f"budget ({i.utilization:g} of {gb(i.gpu.memory_bytes)})", gb(plan.budget)),
        (weights, gb(plan.weights.per_gpu_bytes)),
        ("runtime overhead (assumed)", gb(r.overhead)),
        (f"activations ({i.runtime.max_batched_tokens:,} tokens per step)", gb(r.activations)),
        (f"logits ({min(i.runtime.max_num_seqs, i.runtime.max_batched_tokens)} sequences)",
         gb(r.logits)),
        (f"fragmentation ({i.runtime.fragmentation:.0%} of what is left)", gb(r.fragmentation)),
        (f"KV cache ({plan.num_blocks:,} blocks x {plan.kv.block_size} tokens)",
         gb(plan.kv_pool)),
    ]  # fmt: skip


def _kv_lines(kv: KvMemory, context: int) -> list[str]:
    per_gpu = ""
    if kv.bytes_per_token_per_gpu != kv.bytes_per_token:
        per_gpu = f"; {human(kv.bytes_per_token_per_gpu)} per GPU"
    return [
        f"KV per token: {human(kv.bytes_per_token)} ({kv.bytes_per_token:,} B{per_gpu})",
        f"KV per request at {context:,} tokens: {human(kv.bytes_per_request)} "
        f"({kv.blocks_per_request:,} blocks)",
    ]


def _verdict(max_concurrency: int, context: int, shortfall: int = 0) -> list[str]:
    if shortfall:
        return [
            f"Does not fit: weights and reserve exceed the budget by {gb(shortfall)} per GPU "
            "(more GPUs with --tp, a smaller --weights precision, or a bigger --gpu)."
        ]
    return [
        f"Largest concurrency before the KV cache spills: {max_concurrency:,} requests at "
        f"{context:,} tokens"
    ]


def _check_line(check: ConcurrencyCheck, max_concurrency: int) -> str:
    n = check.requested
    if check.fits:
        return (
            f"--concurrency {n}: fits, with {check.spare_blocks:,} blocks "
            f"({human(check.spare_bytes)}) to spare ({max_concurrency - n:,} more requests)"
        )
    return (
        f"--concurrency {n}: spills: {-check.spare_blocks:,} blocks ({human(-check.spare_bytes)} "
        f"per GPU) short; {max_concurrency:,} fit"
    )


def _what_it_would_take(plan: MemoryPlan) -> list[str]:
    n = plan.inputs.concurrency or max(plan.max_concurrency, 1)
    fits = plan.max_concurrency >= n
    verb = "spill" if fits else "fit"
    rows = [(w.assumption, w.planned, w.flips_at, w.note)
            for w in what_it_would_take(plan.inputs, n)]  # fmt: skip
    return [
        f"What it would take for {n} concurrent requests to {verb} (one assumption at a time):",
        *table(("assumption", "planned", f"{verb}s at", "note"), rows, indent="  "),
        spill_gap(plan, n),
    ]


def memory_json(
    plan: MemoryPlan, explain: bool = False, observed_kv: int | None = None
) -> dict[str, Any]:
    """The plan as JSON; sizes in bytes, per GPU unless the key says total."""
    i, r, w = plan.inputs, plan.reserve, plan.weights
    document: dict[str, Any] = {
        "model": {"name": i.model.name, "source": i.model.source, "params": w.params.total},
        "gpu": {"name": i.gpu.name, "memory_bytes": i.gpu.memory_bytes, "count": i.tp},
        "weights": {"precision": i.weights.name, "bits_per_weight": w.precision.bits_per_weight,
                    "total_bytes": w.total_bytes, "per_gpu_bytes": w.per_gpu_bytes},
        "kv": _kv_json(plan.kv, i.context),
        "budget_bytes": plan.budget,
        "reserve": {"runtime_overhead_bytes": r.overhead, "activation_bytes": r.activations,
                    "logits_bytes": r.logits, "fragmentation_bytes": r.fragmentation},
        "kv_pool_bytes": plan.kv_pool,
        "shortfall_bytes": plan.shortfall,
        "num_blocks": plan.num_blocks,
        "max_concurrency": plan.max_concurrency,
        "concurrency": _check_json(plan.check(i.concurrency)) if i.concurrency else None,
        "assumptions": assumptions(plan),
    }  # fmt: skip
    if observed_kv is not None and i.concurrency is not None:
        document["observed_kv"] = observed_spill(plan, observed_kv, i.concurrency)
    if explain:
        n = i.concurrency or max(plan.max_concurrency, 1)
        document["steps"] = explain_memory(plan)[1:]
        document["what_it_would_take"] = {
            "concurrency": n,
            "rows": [w.__dict__ for w in what_it_would_take(i, n)],
        }
    return document


def _kv_json(kv: KvMemory, context: int) -> dict[str, Any]:
    return {
        "dtype": kv.dtype,
        "bytes_per_token": kv.bytes_per_token,
        "bytes_per_token_per_gpu": kv.bytes_per_token_per_gpu,
        "block_size": kv.block_size,
        "context": context,
        "blocks_per_request": kv.blocks_per_request,
        "bytes_per_request": kv.bytes_per_request,
    }


def _check_json(check: ConcurrencyCheck) -> dict[str, Any]:
    return {
        "requested": check.requested,
        "fits": check.fits,
        "blocks_needed": check.blocks_needed,
        "spare_blocks": check.spare_blocks,
        "spare_bytes": check.spare_bytes,
    }


# -- strata's engine --------------------------------------------------------------------------


def engine_lines(plan: EnginePlan, explain: bool = False) -> list[str]:
    """The terminal report for strata's engine on CPU."""
    i = plan.inputs
    lines = [
        f"{i.model.name} ({i.model.source}) in strata's engine on CPU: {plan.dtype} weights and "
        f"KV cache, max_model_len {plan.max_model_len:,}",
        f"weights: {human(plan.weights.total_bytes)} of host memory (outside the KV budget)",
        f"KV cache: {human(i.kv_cache_memory)} (--kv-cache-memory) -> {plan.num_blocks:,} blocks"
        f" of {i.block_size} tokens ({human(plan.pool_bytes)} allocated)",
        *_kv_lines(plan.kv, plan.context),
        *_verdict(plan.max_concurrency, plan.context),
        f"The batch cap (engine.max_num_seqs) is {i.max_num_seqs}.",
    ]
    if i.concurrency is not None:
        lines.append(_check_line(plan.check(i.concurrency), plan.max_concurrency))
    if explain:
        lines += ["", *explain_engine(plan)]
    return lines


def engine_json(plan: EnginePlan, explain: bool = False) -> dict[str, Any]:
    i = plan.inputs
    document: dict[str, Any] = {
        "model": {"name": i.model.name, "source": i.model.source},
        "target": "strata-engine-cpu",
        "dtype": plan.dtype,
        "max_model_len": plan.max_model_len,
        "kv_cache_memory_bytes": i.kv_cache_memory,
        "weights_bytes": plan.weights.total_bytes,
        "kv": _kv_json(plan.kv, plan.context),
        "num_blocks": plan.num_blocks,
        "allocated_bytes": plan.pool_bytes,
        "max_concurrency": plan.max_concurrency,
        "max_num_seqs": i.max_num_seqs,
        "concurrency": _check_json(plan.check(i.concurrency)) if i.concurrency else None,
    }
    if explain:
        document["steps"] = explain_engine(plan)[1:]
    return document
