"""`--explain`: the planner's arithmetic step by step, its assumptions, and what it would take.

"What it would take" re-runs `compute_plan` with one assumption changed at a time and finds,
by bisection, the value at which the requested concurrency flips between fitting and
spilling. It answers "which assumption would have to be how wrong" instead of tuning one
number until the plan agrees with an anecdote.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from strata.compute.engine_plan import EnginePlan
from strata.compute.memory import (
    LOGITS_BYTES,
    MemoryInputs,
    MemoryPlan,
    RuntimeAssumptions,
    activation_dtype_bytes,
    compute_plan,
)
from strata.compute.models import layer_linear_params
from strata.compute.precision import KV_DTYPE_BYTES, WEIGHT_PRECISIONS, weight_precision
from strata.compute.units import gb, human

MAX_CONTEXT = 1 << 24  # bisection ceiling for token counts
STEPS = 10_000  # resolution of fractions (fragmentation, utilization): 0.01%


@dataclass(frozen=True)
class WhatIf:
    """One assumption, its planned value, and the value at which the verdict flips."""

    assumption: str
    planned: str
    flips_at: str
    note: str = ""


# -- GPU plans ----------------------------------------------------------------------------


def explain_memory(plan: MemoryPlan) -> list[str]:
    """Numbered steps from the GPU size to the largest concurrency, with every operand."""
    return [
        "Step by step (per GPU unless noted; GB = 10^9 bytes):",
        *_numbered([_budget(plan), _params(plan), _weights(plan), _kv_token(plan),
                    _kv_request(plan), _reserve(plan), _pool(plan), _concurrency(plan)]),
    ]  # fmt: skip


def _numbered(steps: list[list[str]]) -> list[str]:
    lines = []
    for number, step in enumerate((s for s in steps if s), 1):
        lines.append(f"{number:>2}. {step[0]}")
        lines.extend(f"    {line}" for line in step[1:])
    return lines


def _budget(plan: MemoryPlan) -> list[str]:
    gpu, util = plan.inputs.gpu, plan.inputs.utilization
    return [
        f"GPU: {gpu.label}: {gpu.memory_bytes:,} B = {gb(gpu.memory_bytes)} as the driver "
        "reports it.",
        f"budget: {gb(gpu.memory_bytes)} x {util:g} (--gpu-memory-utilization) = {gb(plan.budget)}",
    ]


def _params(plan: MemoryPlan) -> list[str]:
    c, p = plan.inputs.model.config, plan.weights.params
    kv_width = c.num_kv_heads * c.head_dim
    head = "tied to the embedding: 0" if not p.lm_head else f"{p.lm_head:,}"
    return [
        f"parameters of {plan.inputs.model.name} ({plan.inputs.model.source}):",
        f"per layer: q {c.hidden_size:,}x{c.num_heads * c.head_dim:,} + k,v "
        f"2x{c.hidden_size:,}x{kv_width:,} + o {c.num_heads * c.head_dim:,}x{c.hidden_size:,}"
        f" + MLP 3x{c.hidden_size:,}x{c.intermediate_size:,} = {layer_linear_params(c):,}",
        f"x {c.num_layers} layers = {p.linear:,} matrix weights",
        f"embedding {c.vocab_size:,} x {c.hidden_size:,} = {p.embedding:,}; LM head {head}; "
        f"norms and biases {p.other:,}",
        f"total {p.total:,} ({p.total / 1e9:.2f} B)",
    ]


def _weights(plan: MemoryPlan) -> list[str]:
    w, tp = plan.weights, plan.inputs.tp
    unq = w.params.unquantized
    return [
        f"weights: {w.precision.describe()}",
        f"matrices: {w.params.linear:,} x {w.precision.bits_per_weight:.4g} bits / 8 = "
        f"{gb(w.quantized_bytes)}",
        f"embeddings, LM head, norms at {w.precision.unquantized_bytes} B: {unq:,} x "
        f"{w.precision.unquantized_bytes} = {gb(w.unquantized_bytes)}",
        f"total {gb(w.total_bytes)}; per GPU (TP {tp}; norms replicated): {gb(w.per_gpu_bytes)}",
    ]


def _kv_token(plan: MemoryPlan) -> list[str]:
    c, kv, tp = plan.inputs.model.config, plan.kv, plan.inputs.tp
    return [
        f"KV per token: 2 (K and V) x {c.num_layers} layers x {c.num_kv_heads} KV heads x "
        f"{c.head_dim} head_dim x {kv.dtype_bytes} B ({kv.dtype}) = {kv.bytes_per_token:,} B "
        f"({human(kv.bytes_per_token)})",
        f"per GPU (TP {tp}: {kv.kv_heads_per_gpu} KV heads each): {kv.bytes_per_token_per_gpu:,} B",
    ]


def _kv_request(plan: MemoryPlan) -> list[str]:
    kv, ctx = plan.kv, plan.inputs.context
    return [
        f"KV per request at {ctx:,} tokens: ceil({ctx:,} / {kv.block_size}) = "
        f"{kv.blocks_per_request:,} blocks x {kv.block_size} tokens x {kv.bytes_per_token:,} B"
        f" = {gb(kv.bytes_per_request)} ({gb(kv.bytes_per_request_per_gpu)} per GPU)"
    ]


def _reserve(plan: MemoryPlan) -> list[str]:
    r, rt, c = plan.reserve, plan.inputs.runtime, plan.inputs.model.config
    tp = plan.inputs.tp
    act_bytes = activation_dtype_bytes(plan.weights.precision)
    seqs = min(rt.max_num_seqs, rt.max_batched_tokens)
    left = plan.budget - plan.weights.per_gpu_bytes - r.overhead - r.activations - r.logits
    return [
        "reserve:",
        f"runtime overhead (assumed, --runtime-overhead): {gb(r.overhead)}",
        f"activations: {rt.max_batched_tokens:,} batched tokens x (2x{c.hidden_size:,} + "
        f"3x{c.intermediate_size:,} / {tp}) x {act_bytes} B = {gb(r.activations)}",
        f"logits: {seqs:,} sequences x {c.vocab_size:,} vocab x {LOGITS_BYTES} B (fp32 logits "
        f"and probabilities) = {gb(r.logits)}",
        f"left: {gb(plan.budget)} - {gb(plan.weights.per_gpu_bytes)} - {gb(r.overhead)} - "
        f"{gb(r.activations)} - {gb(r.logits)} = {gb(left)}",
        f"fragmentation {rt.fragmentation:.0%} of what is left (--fragmentation): "
        f"{gb(r.fragmentation)}",
    ]


def _pool(plan: MemoryPlan) -> list[str]:
    if plan.shortfall:
        return [
            f"KV pool: none. Weights and reserve exceed the budget by {gb(plan.shortfall)} "
            "per GPU: use more GPUs (--tp), a smaller precision or a bigger GPU."
        ]
    return [
        f"KV pool: {gb(plan.kv_pool)} / {plan.kv.block_bytes:,} B per block "
        f"({plan.kv.block_size} tokens) = {plan.num_blocks:,} blocks "
        f"({plan.max_tokens:,} tokens)"
    ]


def _concurrency(plan: MemoryPlan) -> list[str]:
    per, ctx = plan.kv.blocks_per_request, plan.inputs.context
    lines = [
        f"largest concurrency: {plan.num_blocks:,} blocks // {per:,} per request = "
        f"{plan.max_concurrency:,} requests at {ctx:,} tokens"
    ]
    n = plan.inputs.concurrency
    if n is not None:
        check = plan.check(n)
        verdict = (
            f"fits, {check.spare_blocks:,} blocks ({gb(check.spare_bytes)}) to spare"
            if check.fits
            else f"spills: {-check.spare_blocks:,} blocks ({gb(-check.spare_bytes)}) short"
        )
        lines.append(
            f"--concurrency {n}: {n} x {per:,} = {check.blocks_needed:,} blocks of "
            f"{plan.num_blocks:,}: {verdict}"
        )
    return lines


# -- what it would take -------------------------------------------------------------------


def what_it_would_take(inputs: MemoryInputs, n: int) -> list[WhatIf]:
    """For each assumption alone: the value at which `n` concurrent requests flip between
    fitting and spilling (bisection over `compute_plan`)."""
    fits = _fits(inputs, n)
    return [
        _context_row(inputs, n, fits),
        _choice_row(inputs, n, "KV-cache dtype", inputs.kv_dtype, _kv_dtypes(inputs)),
        _choice_row(inputs, n, "weight precision", inputs.weights.name, _precisions(inputs)),
        _overhead_row(inputs, n, fits),
        _batched_tokens_row(inputs, n, fits),
        _fragmentation_row(inputs, n, fits),
        _utilization_row(inputs, n, fits),
    ]


def _fits(inputs: MemoryInputs, n: int) -> bool:
    return compute_plan(inputs).max_concurrency >= n


def _runtime(inputs: MemoryInputs, runtime: RuntimeAssumptions) -> MemoryInputs:
    return replace(inputs, runtime=runtime)


def _first(pred: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Smallest x in [lo, hi] with pred(x), for pred monotone False -> True; None if none."""
    if not pred(hi):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _direction(fits: bool, n: int) -> str:
    return f"{n} spill" if fits else f"{n} fit"


def _context_row(inputs: MemoryInputs, n: int, fits: bool) -> WhatIf:
    spill_at = _first(lambda c: not _fits(replace(inputs, context=c), n), 1, MAX_CONTEXT)
    limit = inputs.model.config.max_position_embeddings
    if spill_at is None:
        flips = "never (up to 16M tokens)"
    elif fits:
        flips = f">= {spill_at:,} tokens"
    else:
        flips = f"<= {spill_at - 1:,} tokens" if spill_at > 1 else "never"
    beyond = spill_at is not None and fits and spill_at > limit
    note = f"beyond the model's {limit:,}-token limit" if beyond else ""
    return WhatIf("context per request", f"{inputs.context:,} tokens", flips, note)


def _kv_dtypes(inputs: MemoryInputs) -> list[tuple[str, MemoryInputs]]:
    return [(name, replace(inputs, kv_dtype=name)) for name in KV_DTYPE_BYTES]


def _precisions(inputs: MemoryInputs) -> list[tuple[str, MemoryInputs]]:
    group = inputs.weights.group_size or 128
    return [(p, replace(inputs, weights=weight_precision(p, group))) for p in WEIGHT_PRECISIONS]


def _choice_row(
    inputs: MemoryInputs, n: int, what: str, planned: str, options: list[tuple[str, MemoryInputs]]
) -> WhatIf:
    fits = _fits(inputs, n)
    flipped = [(name, changed) for name, changed in options if _fits(changed, n) != fits]
    no_room = [name for name, changed in flipped if compute_plan(changed).max_concurrency == 0]
    note = f"{', '.join(no_room)}: no room for even one request" if no_room else ""
    return WhatIf(what, planned, ", ".join(name for name, _ in flipped) or "none", note)


def _overhead_row(inputs: MemoryInputs, n: int, fits: bool) -> WhatIf:
    def spills(b: int) -> bool:
        return not _fits(_runtime(inputs, replace(inputs.runtime, overhead_bytes=b)), n)

    at = _first(spills, 0, inputs.gpu.memory_bytes)
    return WhatIf(
        "runtime overhead (CUDA context, graphs)",
        gb(inputs.runtime.overhead_bytes),
        _bytes_flip(at, fits),
        "measured values are 0.5-3 GB per GPU",
    )


def _batched_tokens_row(inputs: MemoryInputs, n: int, fits: bool) -> WhatIf:
    def spills(t: int) -> bool:
        return not _fits(_runtime(inputs, replace(inputs.runtime, max_batched_tokens=t)), n)

    at = _first(spills, 1, MAX_CONTEXT)
    flips = "never" if at is None else (f">= {at:,} tokens" if fits else f"<= {at - 1:,}")
    planned = f"{inputs.runtime.max_batched_tokens:,} tokens"
    return WhatIf("activations (tokens per step)", planned, flips, "--max-batched-tokens")


def _fragmentation_row(inputs: MemoryInputs, n: int, fits: bool) -> WhatIf:
    def spills(k: int) -> bool:
        return not _fits(_runtime(inputs, replace(inputs.runtime, fragmentation=k / STEPS)), n)

    at = _first(spills, 0, STEPS - 1)
    if at is None:
        flips = "never"
    else:  # exact grid values (0.01%): the first that spills, or the last that fits
        flips = f">= {at / STEPS:.2%}" if fits else f"<= {(at - 1) / STEPS:.2%}"
    note = "a contiguous (non-paged) cache wastes 60-80%"
    return WhatIf(
        "fragmentation of free memory", f"{inputs.runtime.fragmentation:.0%}", flips, note
    )


def _utilization_row(inputs: MemoryInputs, n: int, fits: bool) -> WhatIf:
    def fits_at(k: int) -> bool:
        return _fits(replace(inputs, utilization=k / STEPS), n)

    at = _first(fits_at, 1, STEPS)
    if at is None:
        flips = "never (even 100%)"
    else:
        flips = f"<= {(at - 1) / STEPS:.4f}" if fits else f">= {at / STEPS:.4f}"
    return WhatIf("GPU memory utilization", f"{inputs.utilization:g}", flips)


def _bytes_flip(at: int | None, fits: bool) -> str:
    """Rounded outwards to 10 MB, so the value shown is on the far side of the boundary."""
    if at is None:
        return "never"
    if fits:
        return f">= {gb(math.ceil(at / 1e7) * 1e7)}"
    return f"<= {gb(math.floor(max(at - 1, 0) / 1e7) * 1e7)}"


def spill_gap(plan: MemoryPlan, n: int) -> str:
    """One sentence: how much memory besides the KV of `n` requests the plan leaves."""
    need = plan.check(n).blocks_needed * plan.kv.block_bytes
    others = plan.budget - plan.kv_pool
    return (
        f"For {n} requests' KV ({gb(need)} per GPU at {plan.inputs.context:,} tokens) to "
        f"spill, everything else would have to take more than {gb(plan.budget)} - {gb(need)} "
        f"= {gb(plan.budget - need)} per GPU; this plan puts weights and reserve at "
        f"{gb(others)}."
    )


def observed_spill(plan: MemoryPlan, observed: int, n: int) -> list[str]:
    """What a spill seen at `observed` bytes of KV (the whole model's, `n` requests) implies
    about everything else on the GPU, compared with this plan."""
    kv = plan.kv
    per_gpu = observed * kv.bytes_per_token_per_gpu // kv.bytes_per_token
    tokens = observed / n / kv.bytes_per_token
    others = plan.budget - plan.kv_pool
    lines = [
        f"Observed: {gb(observed)} of KV for {n} requests = {gb(observed / n)} each = "
        f"{tokens:,.0f} tokens at {kv.dtype} ({human(kv.bytes_per_token)} a token)."
    ]
    if per_gpu > plan.kv_pool:
        return [*lines, f"This plan's KV pool holds {gb(plan.kv_pool)} per GPU: the spill is "
                        "what it predicts."]  # fmt: skip
    return [
        *lines,
        f"This plan leaves {gb(plan.kv_pool)} per GPU for the KV cache. For {gb(per_gpu)} per "
        f"GPU to spill, everything else must have taken more than {gb(plan.budget)} - "
        f"{gb(per_gpu)} = {gb(plan.budget - per_gpu)}: {gb(plan.budget - per_gpu - others)} "
        f"more than this plan's weights and reserve ({gb(others)}), or the engine used less "
        "of the GPU, or the requests were longer than measured.",
    ]


def assumptions(plan: MemoryPlan) -> list[str]:
    """The planner's assumptions for a GPU plan, each with its number and its option."""
    rt, inputs = plan.inputs.runtime, plan.inputs
    return [
        f"GPU memory as the driver reports it ({gb(inputs.gpu.memory_bytes)}); the engine "
        f"takes {inputs.utilization:g} of it (--gpu-memory-utilization, vLLM's default 0.9).",
        f"weights: {inputs.weights.describe()}; embeddings, LM head and norms stay "
        f"{8 * inputs.weights.unquantized_bytes}-bit.",
        f"runtime overhead {gb(rt.overhead_bytes)} per GPU: CUDA context, cuBLAS/NCCL "
        "workspaces, CUDA graphs (--runtime-overhead; vLLM logs its measured values at "
        "start-up).",
        f"activations of {rt.max_batched_tokens:,} tokens per step (--max-batched-tokens) and "
        f"fp32 logits for {rt.max_num_seqs} sequences (--max-num-seqs): an estimate of the "
        "peak vLLM measures with a profiling run.",
        f"fragmentation {rt.fragmentation:.0%} of the memory left for the KV cache "
        "(--fragmentation): allocator slack; a paged cache wastes < 1 block per request, "
        "which rounding each request up to whole blocks counts.",
        f"every request runs to its full context ({inputs.context:,} tokens) with no prefix "
        "sharing: an upper bound on KV use.",
        "'spill': the engine runs out of KV blocks and preempts a request: vLLM and strata "
        "recompute it later, vLLM V0 could swap its blocks to CPU memory (--swap-space); "
        "either way its latency multiplies.",
    ]


# -- strata's engine --------------------------------------------------------------------------


def explain_engine(plan: EnginePlan) -> list[str]:
    """The engine's own sizing, step by step."""
    c, kv, inputs = plan.inputs.model.config, plan.kv, plan.inputs
    memory = inputs.kv_cache_memory
    steps = [
        [f"model {inputs.model.name} ({inputs.model.source}); engine.dtype {inputs.dtype} -> "
         f"{plan.dtype} on this machine (strata.engine.core.resolve_dtype)"],
        [f"KV per token: 2 x {c.num_layers} layers x {c.num_kv_heads} KV heads x "
         f"{c.head_dim} head_dim x {kv.dtype_bytes} B = {kv.bytes_per_token:,} B"],
        [f"one block: {kv.block_size} tokens x {kv.bytes_per_token:,} B = {kv.block_bytes:,} B"],
        [f"blocks: {memory:,} B (--kv-cache-memory) // {kv.block_bytes:,} B = "
         f"{plan.num_blocks:,} (strata.engine.core.blocks_for_memory)",
         f"allocated: {plan.num_blocks:,} x {kv.block_bytes:,} B = {plan.pool_bytes:,} B; "
         f"{memory - plan.pool_bytes:,} B unused"],
        [f"max_model_len {plan.max_model_len:,} needs ceil({plan.max_model_len:,} / "
         f"{kv.block_size}) = {-(-plan.max_model_len // kv.block_size):,} blocks: "
         "the engine starts"],
        [f"largest concurrency at {plan.context:,} tokens: {plan.num_blocks:,} // "
         f"{kv.blocks_per_request:,} = {plan.max_concurrency:,} requests; the batch cap "
         f"(engine.max_num_seqs) is {inputs.max_num_seqs}"],
    ]  # fmt: skip
    return ["Step by step (strata's engine sizes its KV cache from an explicit budget):",
            *_numbered(steps)]  # fmt: skip
