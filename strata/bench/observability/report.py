"""The observability results as JSON and as the Markdown page docs/benchmarks/observability.md."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from strata.bench.observability.accuracy import BOUND_MS, ENGINE_TTFT, GATEWAY_TTFT, AccuracyResult
from strata.bench.observability.overhead import MIN_PAIRS, OverheadResult
from strata.bench.observability.stats import Overhead
from strata.bench.observability.twin import OFF

Data = dict[str, Any]

MEASURES = {
    "client": "the load generator starts sending the request → the first chunk with generated "
    "text arrives",
    "gateway": "the gateway receives the request → it hands the first text chunk, past the "
    "answer guard, to the response; the usage ledger's `ttft_ms`",
    "engine": "the engine's HTTP route receives the request → the engine computes the first "
    "token (from the engine's trace of the request)",
}
ARM_LABELS = {
    "off": "recording off",
    "on": "Prometheus metrics",
    "otel": "Prometheus + OpenTelemetry (traces and GenAI metrics over OTLP)",
}


def accuracy_summary(result: AccuracyResult) -> Data:
    agreement = result.agreement
    return {
        "plan": result.plan.describe(),
        "measures": MEASURES,
        "failed": result.failed,
        **{name: _finite(value) for name, value in asdict(agreement).items()},
        "histogram_p50_ms": result.histogram_p50_ms,
        "bound_ms": BOUND_MS,
        "within_bound": agreement.within(BOUND_MS) if agreement.pairs else None,
        "requests": [asdict(pair) for pair in result.matched.pairs],
    }


def overhead_summary(result: OverheadResult) -> Data:
    runs = [{**asdict(run), "throughput": run.throughput} for run in result.runs]
    return {
        "plan": result.plan.describe(),
        "arms": {arm: ARM_LABELS[arm] for arm in result.arms},
        "runs": runs,
        "recorded_ttft_observations": result.recorded,
        "otel_exports": result.otel_exports,
        "comparisons": {arm: _overhead(result.overhead(arm)) for arm in result.arms if arm != OFF},
    }


def _overhead(overhead: Overhead) -> Data:
    return {
        "ratios": list(overhead.ratios),
        "median_ratio": overhead.median_ratio,
        "interval_95": [overhead.interval.low, overhead.interval.high],
        "median_overhead": overhead.median_overhead,
        "max_overhead": overhead.max_overhead,
        "verdict": overhead.verdict,
    }


# -- Markdown ------------------------------------------------------------------------------


def markdown(data: Data) -> str:
    lines = [
        "# Observability: accuracy and overhead",
        "",
        f"Command: `{data['command']}` ({data['when']}; {data['machine']}; model "
        f"`{data['model']}`).",
        "",
        *(_accuracy(data["accuracy"]) if data.get("accuracy") else ["(accuracy: not run)"]),
        "",
        *(_overhead_md(data["overhead"]) if data.get("overhead") else ["(overhead: not run)"]),
    ]
    return "\n".join(lines) + "\n"


def _accuracy(acc: Data) -> list[str]:
    plan, hist = acc["plan"], acc["histogram_p50_ms"]
    verdict = {True: "**yes**", False: "**no**", None: "not measured"}[acc["within_bound"]]
    return [
        "## Time to first token: strata against its client",
        "",
        f"{plan['requests']} streamed chat requests (Poisson, {plan['rate_per_s']:g}/s; prompts "
        f"`{plan['prompt_len']}` words, {plan['output_len']} tokens out) from `strata bench "
        "serve`'s load generator to a gateway with its built-in engine, on loopback, after "
        f"{plan['warmup']} warm-up requests. Each answer's `x-request-id` finds its usage-ledger "
        f"row and the engine's trace: {acc['pairs']} requests matched, {acc['unmatched']} not, "
        f"{acc['failed']} failed.",
        "",
        "| side | from → to | TTFT p50 |",
        "|---|---|--:|",
        f"| client | {MEASURES['client']} | {_ms(acc['client_p50_ms'])} |",
        f"| gateway | {MEASURES['gateway']} | {_ms(acc['strata_p50_ms'])} |",
        f"| engine | {MEASURES['engine']} | {_ms(acc['engine_p50_ms'])} |",
        "",
        f"- Client − gateway, per request: p50 **{_ms(acc['difference_p50_ms'])}**, p95 "
        f"{_ms(acc['difference_p95_ms'])}. Within {acc['bound_ms']:g} ms at p50: {verdict}. The "
        "difference is what the gateway cannot see: the client's send and receive and the "
        "HTTP stack on both sides.",
        f"- Gateway − engine, per request: p50 {_ms(acc['gateway_minus_engine_p50_ms'])}: auth, "
        "the input guard (its MiniLM stage runs on texts its first stage finds suspicious, "
        "which random-word prompts often are), the in-process call to the engine, the relay, "
        "and the answer guard, which holds back the last token (and a trailing run of digit or "
        "capital groups) until the next arrives, so a secret split across chunks is caught "
        "whole.",
        f"- From the `/metrics` histograms' buckets (interpolated, as `histogram_quantile` "
        f"does): `{GATEWAY_TTFT}` p50 {_ms(hist[GATEWAY_TTFT])}, `{ENGINE_TTFT}` p50 "
        f"{_ms(hist[ENGINE_TTFT])} (the engine's route receipt → the first token reaching it).",
    ]


def _overhead_md(over: Data) -> list[str]:
    plan, arms, comparisons = over["plan"], list(over["arms"]), over["comparisons"]
    lines = [
        "## Instrumentation overhead: engine throughput, recording on against off",
        "",
        f"One engine process serves the same engine under {len(arms)} arms: "
        + "; ".join(f"`{arm}`: {label}" for arm, label in over["arms"].items())
        + f". Each of {plan['rounds']} rounds runs the same seeded workload ({plan['concurrency']} "
        f"closed-loop clients, {plan['requests_per_run']} requests, prompts `{plan['prompt_len']}` "
        f"words, {plan['output_len']} tokens out, prefix caching off) on every arm in a "
        "shuffled order; throughput is output tokens per second of wall time.",
        "",
        "| round | order | "
        + " | ".join(f"{a} tok/s" for a in arms)
        + " | "
        + " | ".join(f"{a}/off" for a in comparisons)
        + " |",
        "|--:|---|" + "--:|" * (len(arms) + len(comparisons)),
        *_round_rows(over, arms, comparisons),
        "",
        "| comparison | median ratio | 95% bootstrap interval | median overhead | < 2%? |",
        "|---|--:|--:|--:|---|",
        *(_comparison_row(arm, c) for arm, c in comparisons.items()),
        "",
        *_overhead_notes(over, plan),
    ]
    return lines


def _round_rows(over: Data, arms: list[str], comparisons: Data) -> list[str]:
    rows = []
    for number in range(over["plan"]["rounds"]):
        runs = [r for r in over["runs"] if r["round"] == number]
        runs.sort(key=lambda r: r["position"])
        speed = {r["arm"]: r["throughput"] for r in runs}
        ratios = [f"{c['ratios'][number]:.3f}" for c in comparisons.values()]
        rows.append(f"| {number + 1} | {' → '.join(r['arm'] for r in runs)} | "
                    + " | ".join(f"{speed[a]:.1f}" for a in arms) + " | "
                    + " | ".join(ratios) + " |")  # fmt: skip
    return rows


def _comparison_row(arm: str, c: Data) -> str:
    low, high = c["interval_95"]
    verdict = {"holds": "**holds**", "fails": "**fails**", "inconclusive": "inconclusive"}
    return (f"| {arm} / off | {c['median_ratio']:.4f} | {low:.4f} – {high:.4f} | "
            f"{c['median_overhead'] * 100:+.2f}% | {verdict[c['verdict']]} |")  # fmt: skip


def _overhead_notes(over: Data, plan: Data) -> list[str]:
    recorded = ", ".join(f"`{a}` {n:.0f}" for a, n in over["recorded_ttft_observations"].items())
    exports = ", ".join(f"{path} {n}" for path, n in sorted(over["otel_exports"].items()))
    notes = [
        "- Verdict: *holds* when the whole interval of the median ratio lies above 0.98, "
        "*fails* when it lies below, *inconclusive* when it straddles 0.98 (more rounds or a "
        "quieter machine). The interval resamples the rounds' ratios (10,000 resamples).",
        f"- TTFT observations in each arm's `/metrics` at the end: {recorded} (`off` must be 0: "
        "the switch really stops recording).",
    ]
    if exports:
        notes.append(f"- OTLP exports the in-process receiver got: {exports}.")
    if plan["rounds"] < MIN_PAIRS:
        notes.append(f"- Only {plan['rounds']} rounds: fewer than the {MIN_PAIRS} pairs the "
                     "target asks for, so these numbers are indicative only.")  # fmt: skip
    return notes


def _finite(value: Any) -> Any:
    """NaN (a percentile of nothing) as JSON null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def _ms(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.1f} ms"
