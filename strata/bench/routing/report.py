"""A routing run's numbers per policy, as JSON and as a Markdown page.

The page is `routing.md`, routing's alone (other benchmarks write their own pages); the JSON
keeps every run's figures besides the pooled ones.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from strata.bench.records import percentile
from strata.bench.routing.run import PolicyRun


def summary(runs: Sequence[PolicyRun]) -> dict[str, Any]:
    """Every run of one policy pooled: rates over all turns, throughput over all wall time."""
    turns = [t for r in runs for t in r.turns]
    done = [t for t in turns if t.ok]
    prompt = sum(t.prompt_tokens for t in done)
    wall = sum(r.wall_s for r in runs)
    ttft = [(t.first_text - t.started) * 1000 for t in done if t.first_text is not None]
    e2e = [(t.ended - t.started) * 1000 for t in done]
    return {
        "requests": len(turns),
        "failed": len(turns) - len(done),
        "prompt_tokens": prompt,
        "cached_tokens": sum(t.cached_tokens for t in done),
        "prefix_hit_rate": _ratio(sum(t.cached_tokens for t in done), prompt),
        "ttft_ms": _quantiles(ttft),
        "e2e_ms": _quantiles(e2e),
        "output_tokens_per_s": _ratio(sum(t.completion_tokens for t in done), wall),
        "requests_per_s": _ratio(len(done), wall),
        "by_upstream": dict(sorted(Counter(t.upstream for t in done).items())),
        "router": _router(runs),
    }


def per_run(run: PolicyRun) -> dict[str, Any]:
    one = summary([run])
    return {"policy": run.policy, "salt": run.salt, "wall_s": round(run.wall_s, 2),
            "prefix_hit_rate": one["prefix_hit_rate"], "ttft_ms": one["ttft_ms"],
            "failed": one["failed"]}  # fmt: skip


def _router(runs: Sequence[PolicyRun]) -> dict[str, Any] | None:
    """Prefix-aware routing's own account: decisions by outcome and its predicted hit rate."""
    stats = [s for r in runs for s in r.routing]
    if not any(sum(s.decisions.values()) for s in stats):
        return None
    decisions: Counter[str] = Counter()
    for s in stats:
        decisions.update(s.decisions)
    hits, blocks = sum(s.hit_blocks for s in stats), sum(s.prompt_blocks for s in stats)
    return {"decisions": dict(decisions), "predicted_hit_rate": _ratio(hits, blocks)}


def _quantiles(values: list[float]) -> dict[str, float | None]:
    return {"p50": _round(percentile(values, 50)), "p95": _round(percentile(values, 95))}


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 1)


def markdown(data: dict[str, Any]) -> str:
    shape, engines = data["shape"], data["engines"]
    rows = [_row(name, p) for name, p in data["policies"].items()]
    lines = [
        "# Prefix-aware routing",
        "",
        f"Command: `{data['command']}` ({data['when']}; {data['machine']}).",
        "",
        f"{engines['count']} strata engine servers ({engines['model']}, KV cache "
        f"{engines['kv_cache_memory']} each, {engines['threads']} thread(s) each) behind "
        "strata's router, over HTTP.",
        f"Workload: {shape['contexts']} system prompts / RAG contexts of about "
        f"{shape['context_words']} words; {shape['conversations']} conversations of "
        f"{shape['turns']} turns, each on one context, starting as a Poisson process of "
        f"{shape['rate']}/s; {shape['think_s']} s mean think time between turns; "
        f"{shape['max_tokens']} output tokens per turn (seed {shape['seed']}). Each policy ran "
        f"{data['repeats']} time(s), policies taking turns, each run with its own prompts.",
        "",
        "| policy | requests (failed) | prefix-hit rate (tokens) | TTFT p50 / p95 | "
        "e2e p50 / p95 | output tok/s | requests per engine |",
        "|---|--:|--:|--:|--:|--:|---|",
        *rows,
        "",
        *_decisions(data["policies"]),
        "The prefix-hit rate is what the engines report per reply "
        "(`usage.prompt_tokens_details.cached_tokens` / `prompt_tokens`). TTFT runs from "
        "handing the request to the router (prompt hashing and the choice included) to the "
        "first text.",
    ]
    return "\n".join(lines) + "\n"


def _row(name: str, p: dict[str, Any]) -> str:
    engines = ", ".join(f"{k}: {v}" for k, v in p["by_upstream"].items())
    return (
        f"| {name} | {p['requests']} ({p['failed']}) | {_pct(p['prefix_hit_rate'])} | "
        f"{_ms(p['ttft_ms'])} | {_ms(p['e2e_ms'])} | {_num(p['output_tokens_per_s'])} | "
        f"{engines} |"
    )


def _decisions(policies: dict[str, Any]) -> list[str]:
    router = (policies.get("prefix") or {}).get("router")
    if not router:
        return []
    counts = ", ".join(f"{k} {v}" for k, v in router["decisions"].items())
    return [
        f"Prefix-aware router's decisions: {counts}; it predicted a hit rate of "
        f"{_pct(router['predicted_hit_rate'])} (blocks) against "
        f"{_pct(policies['prefix']['prefix_hit_rate'])} measured (tokens).",
        "",
    ]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _ms(q: dict[str, float | None]) -> str:
    return " / ".join("–" if v is None else f"{v:.0f} ms" for v in (q["p50"], q["p95"]))


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"
