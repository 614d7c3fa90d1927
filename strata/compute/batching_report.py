"""What `strata plan batching` prints: the inputs, one row per batch cap and window, the
recommendation, and the same as JSON."""

from __future__ import annotations

import math
from typing import Any

from strata.bench.summary import Summary
from strata.compute.batching import BatchingPlan, Prediction
from strata.compute.tables import table

_HEADERS = ("cap", "window ms", "TTFT p50 ms", "TTFT p95 ms", "E2E p50 s", "E2E p95 s",
            "req/s", "out tok/s", "SLO", "max req/s in SLO")  # fmt: skip


def batching_lines(plan: BatchingPlan, profile_note: str) -> list[str]:
    """The terminal report; `profile_note` says which profile the step times come from."""
    rows = [_row(p, p is plan.recommended) for p in plan.predictions]
    return [
        *_inputs(plan, profile_note),
        "",
        *table(_HEADERS, rows, right=range(0, 8)),
        "",
        *recommendation(plan),
    ]


def _inputs(plan: BatchingPlan, profile_note: str) -> list[str]:
    traffic, workload = plan.traffic, plan.traffic.workload
    prefix = (f", a shared prefix of {workload.shared_prefix_tokens}"
              if workload.shared_prefix_tokens else "")  # fmt: skip
    lines = [
        f"Traffic: {traffic.arrivals.label}, {traffic.requests} simulated requests, prompts "
        f"{workload.prompt_len.spec} tokens{prefix}, outputs {workload.output_len.spec} "
        f"tokens, seed {workload.seed}",
        f"SLO: {_slo(plan)}; token budget {plan.token_budget} per step",
        f"Step times: {profile_note}",
    ]
    too_big = [p.candidate.cap for p in plan.predictions
               if p.candidate.cap > plan.max_profiled_batch]  # fmt: skip
    if too_big:
        lines.append(
            f"Note: the profile measured batches up to {plan.max_profiled_batch}; caps "
            f"{sorted(set(too_big))} extrapolate its step times."
        )
    return lines


def _slo(plan: BatchingPlan) -> str:
    parts = [f"p95 TTFT <= {plan.slo.ttft_ms:g} ms"] if plan.slo.ttft_ms else []
    if plan.slo.e2e_ms:
        parts.append(f"p95 E2E <= {plan.slo.e2e_ms:g} ms")
    return ", ".join(parts) + ", at most 1% of requests refused"


def _row(p: Prediction, recommended: bool) -> tuple[str, ...]:
    s = p.summary
    return (
        f"{p.candidate.cap}{' *' if recommended else ''}", f"{p.candidate.window_s * 1000:g}",
        _ms(s.ttft_ms.p50), _ms(s.ttft_ms.p95), _s(s.e2e_ms.p50), _s(s.e2e_ms.p95),
        f"{s.request_throughput:.2f}", f"{s.output_throughput:.1f}",
        "holds" if p.holds else "breaks", _rate(p.capacity),
    )  # fmt: skip


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _s(value_ms: float) -> str:
    return "-" if math.isnan(value_ms) else f"{value_ms / 1000:,.2f}"


def _rate(rate: float | None) -> str:
    return "none" if rate is None else f"{rate:.2f}"


def recommendation(plan: BatchingPlan) -> list[str]:
    best = plan.recommended
    if best is None:
        top = max(plan.predictions, key=lambda p: p.capacity or 0.0)
        return [
            f"No cap and window holds the SLO at {plan.traffic.rate:g} req/s. The most any holds "
            f"is {_rate(top.capacity)} req/s (cap {top.candidate.cap}, window "
            f"{top.candidate.window_s * 1000:g} ms): add replicas, or relax the SLO."
        ]
    c, s = best.candidate, best.summary
    return [
        f"Recommended: max_num_seqs {c.cap}, batch_window_ms {c.window_s * 1000:g} "
        f"(engine.max_num_seqs, engine.batch_window_ms): holds the SLO up to "
        f"{_rate(best.capacity)} req/s; at {plan.traffic.rate:g} req/s p95 TTFT "
        f"{_ms(s.ttft_ms.p95)} ms, p95 E2E {_s(s.e2e_ms.p95)} s."
    ]


def batching_json(plan: BatchingPlan, profile: dict[str, Any]) -> dict[str, Any]:
    traffic = plan.traffic
    return {
        "traffic": {
            "arrivals": traffic.arrivals.describe(),
            "requests": traffic.requests,
            "workload": traffic.workload.describe(),
        },
        "slo": plan.slo.describe(),
        "token_budget": plan.token_budget,
        "profile": profile,
        "candidates": [_prediction_json(p) for p in plan.predictions],
        "recommended": None if plan.recommended is None else _candidate(plan.recommended),
    }


def _prediction_json(p: Prediction) -> dict[str, Any]:
    return {
        **_candidate(p),
        **summary_json(p.summary),
        "holds_slo": p.holds,
        "max_rate_within_slo": p.capacity,
    }


def _candidate(p: Prediction) -> dict[str, Any]:
    return {"max_num_seqs": p.candidate.cap, "batch_window_ms": p.candidate.window_s * 1000}


def summary_json(s: Summary) -> dict[str, Any]:
    """The latencies and throughputs one run (simulated or real) is compared on."""
    return {
        "ttft_p50_ms": _round(s.ttft_ms.p50),
        "ttft_p95_ms": _round(s.ttft_ms.p95),
        "e2e_p50_ms": _round(s.e2e_ms.p50),
        "e2e_p95_ms": _round(s.e2e_ms.p95),
        "request_throughput": _round(s.request_throughput, 3),
        "output_throughput": _round(s.output_throughput),
        "failed": s.failed,
    }


def _round(value: float, digits: int = 1) -> float | None:
    return None if math.isnan(value) else round(value, digits)
