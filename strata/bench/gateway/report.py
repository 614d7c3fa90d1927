"""The gateway benchmark's report: `gateway.json` and `gateway.md`, both naming the command.

Overhead is a gateway's latency percentile minus the direct call's at the same mode and
connection count. The targets compare strata with LiteLLM: peak request rate (best over the
connection counts) at least 10x, and p99 overhead at one connection at most a tenth. Nothing
here measures anything.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from strata.bench.gateway.modes import MODES
from strata.bench.gateway.run import Cell, RunResult
from strata.bench.gateway.wrk import WrkResult

GOAL = 10.0
CLIENT_BOUND = 0.9  # wrk + mock using this much of their core: the client set the pace
NOISY = 0.1  # other processes using this much of a core during a cell


@dataclass(frozen=True)
class Target:
    """One goal: strata's value against LiteLLM's, `ratio` in the direction where more is
    better for strata (rate: strata / LiteLLM; overhead: LiteLLM / strata)."""

    name: str
    unit: str
    strata: float | None
    litellm: float | None
    ratio: float | None
    met: bool | None  # None: not measured


@dataclass(frozen=True)
class GatewayReport:
    document: dict[str, Any]
    markdown: str

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path, md_path = out_dir / "gateway.json", out_dir / "gateway.md"
        text = json.dumps(self.document, indent=2, allow_nan=False)
        json_path.write_text(text + "\n", encoding="utf-8")
        md_path.write_text(self.markdown, encoding="utf-8")
        return json_path, md_path


# -- derived numbers ----------------------------------------------------------------------------


def find(cells: Sequence[Cell], system: str, mode: str, concurrency: int) -> Cell | None:
    match = (c for c in cells if (c.system, c.mode, c.concurrency) == (system, mode, concurrency))
    return next(match, None)


def overhead_ms(cells: Sequence[Cell], cell: Cell) -> tuple[float, float] | None:
    """(p50, p99) of `cell` minus the direct call's; None for direct or without a baseline."""
    base = find(cells, "direct", cell.mode, cell.concurrency)
    if cell.system == "direct" or base is None:
        return None
    return cell.wrk.p50_ms - base.wrk.p50_ms, cell.wrk.p99_ms - base.wrk.p99_ms


def peak_rate(cells: Sequence[Cell], system: str, mode: str) -> float | None:
    rates = [c.wrk.requests_per_s for c in cells if (c.system, c.mode) == (system, mode)]
    return max(rates) if rates else None


def rate_target(cells: Sequence[Cell], mode: str) -> Target:
    strata, litellm = peak_rate(cells, "strata", mode), peak_rate(cells, "litellm", mode)
    ratio = strata / litellm if strata is not None and litellm else None
    met = None if ratio is None else ratio >= GOAL
    return Target(f"peak request rate, {mode}", "req/s", strata, litellm, ratio, met)


def p99_overhead_target(cells: Sequence[Cell], mode: str) -> Target:
    def at_one(system: str) -> float | None:
        cell = find(cells, system, mode, 1)
        over = None if cell is None else overhead_ms(cells, cell)
        return None if over is None else over[1]

    strata, litellm = at_one("strata"), at_one("litellm")
    if strata is None or litellm is None:
        return Target(f"p99 overhead at 1 connection, {mode}", "ms", strata, litellm, None, None)
    ratio = litellm / strata if strata > 0 else None  # strata at or below the baseline: no ratio
    met = strata <= litellm / GOAL
    return Target(f"p99 overhead at 1 connection, {mode}", "ms", strata, litellm, ratio, met)


def targets(cells: Sequence[Cell]) -> list[Target]:
    return [rate_target(cells, m.name) for m in MODES] + [
        p99_overhead_target(cells, m.name) for m in MODES
    ]


def cpu_per_request(cells: Sequence[Cell], system: str, mode: str) -> float | None:
    """The median over connection counts of the gateway's CPU ms per request. Unlike rates and
    latencies, it barely moves when other processes share the gateway's core."""
    values = [
        c.gateway_cpu_ms_per_request
        for c in cells
        if (c.system, c.mode) == (system, mode) and c.gateway_cpu_ms_per_request is not None
    ]
    return statistics.median(values) if values else None


def cpu_comparison(cells: Sequence[Cell]) -> dict[str, dict[str, float | None]]:
    """Per mode: strata's and LiteLLM's CPU ms per request, and LiteLLM's / strata's."""
    out = {}
    for m in MODES:
        strata, litellm = (cpu_per_request(cells, s, m.name) for s in ("strata", "litellm"))
        ratio = litellm / strata if strata and litellm is not None else None
        out[m.name] = {"strata_ms": strata, "litellm_ms": litellm, "ratio": ratio}
    return out


def guard_cost(cells: Sequence[Cell]) -> dict[str, dict[str, float | None]]:
    """Per mode, strata with its guard step off and on: CPU ms per request (median over
    connection counts), peak rate and p99 overhead at one connection. Empty without both."""
    systems = {c.system for c in cells}
    if not {"strata", "strata-guard"} <= systems:
        return {}
    out = {}
    for m in MODES:
        row: dict[str, float | None] = {}
        for label, system in (("off", "strata"), ("on", "strata-guard")):
            cell = find(cells, system, m.name, 1)
            over = None if cell is None else overhead_ms(cells, cell)
            row[f"cpu_ms_{label}"] = cpu_per_request(cells, system, m.name)
            row[f"peak_rps_{label}"] = peak_rate(cells, system, m.name)
            row[f"p99_overhead_ms_{label}"] = None if over is None else over[1]
        off, on = row["cpu_ms_off"], row["cpu_ms_on"]
        row["cpu_ms_added"] = None if off is None or on is None else on - off
        out[m.name] = row
    return out


# -- JSON ---------------------------------------------------------------------------------------


def cell_json(cells: Sequence[Cell], cell: Cell) -> dict[str, Any]:
    w, over = cell.wrk, overhead_ms(cells, cell)
    return {
        "system": cell.system,
        "mode": cell.mode,
        "concurrency": cell.concurrency,
        "requests": w.requests,
        "duration_s": round(w.duration_s, 3),
        "requests_per_s": round(w.requests_per_s, 2),
        "latency_ms": _latency_json(w),
        "errors": {**asdict(w.errors), "total": w.errors.total},
        "overhead_ms": over and {"p50": round(over[0], 3), "p99": round(over[1], 3)},
        "client_core_busy": round(cell.client_core_busy, 3),
        "client_cpu_share": round(cell.client_cpu_share, 3),
        "gateway_core_busy": round(cell.gateway_core_busy, 3),
        "gateway_cpu_share": _round(cell.gateway_cpu_share, 3),
        "foreign_share": round(cell.foreign_share, 3),
        "gateway_cpu_ms_per_request": _round(cell.gateway_cpu_ms_per_request, 3),
    }


def _latency_json(w: WrkResult) -> dict[str, float]:
    values = (w.mean_ms, w.p50_ms, w.p90_ms, w.p95_ms, w.p99_ms, w.max_ms)
    names = ("mean", "p50", "p90", "p95", "p99", "max")
    return {name: round(v, 3) for name, v in zip(names, values, strict=True)}


def document(result: RunResult, command: str, header: dict[str, Any]) -> dict[str, Any]:
    """`header`: date, versions and machine notes gathered by the caller."""
    return {
        "benchmark": "gateway",
        "command": command,
        **header,
        "plan": asdict(result.plan),
        "setup": result.notes,
        "load_average": {
            "before": [round(x, 2) for x in result.load_before],
            "after": [round(x, 2) for x in result.load_after],
        },
        "wall_s": round(result.wall_s, 1),
        "targets": [_target_json(t) for t in targets(result.cells)],
        "gateway_cpu_ms_per_request": {
            mode: {k: _round(v, 3) for k, v in row.items()}
            for mode, row in cpu_comparison(result.cells).items()
        },
        "guard_step": {
            mode: {k: _round(v, 3) for k, v in row.items()}
            for mode, row in guard_cost(result.cells).items()
        },
        "cells": [cell_json(result.cells, c) for c in result.cells],
    }


def _target_json(t: Target) -> dict[str, Any]:
    values = {k: _round(getattr(t, k), 3) for k in ("strata", "litellm")}
    return {**asdict(t), **values, "ratio": _round(t.ratio, 2), "goal": GOAL}


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)


# -- Markdown -----------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    if value is None:
        return "–"
    digits = 3 if abs(value) < 1 else 2 if abs(value) < 10 else 1
    return f"{value:.{digits}f}"


def rate(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


RESULTS_HEAD = (
    "| system | mode | conns | req/s | p50 ms | p95 ms | p99 ms | errors | +p50 ms | +p99 ms "
    "| client core (wrk+mock) | gateway core (gateway) | gateway CPU ms/req | other load |\n"
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
)


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def results_row(cells: Sequence[Cell], cell: Cell) -> str:
    w, over = cell.wrk, overhead_ms(cells, cell) or (None, None)
    bound = " ⚑" if cell.client_cpu_share >= CLIENT_BOUND else ""
    fields = [
        cell.system, cell.mode, str(cell.concurrency), rate(w.requests_per_s) + bound,
        ms(w.p50_ms), ms(w.p95_ms), ms(w.p99_ms), str(w.errors.total), ms(over[0]), ms(over[1]),
        f"{percent(cell.client_core_busy)} ({percent(cell.client_cpu_share)})",
        f"{percent(cell.gateway_core_busy)} ({percent(cell.gateway_cpu_share)})",
        ms(cell.gateway_cpu_ms_per_request), percent(max(cell.foreign_share, 0.0)),
    ]  # fmt: skip
    return "| " + " | ".join(fields) + " |"


def results_table(cells: Sequence[Cell]) -> str:
    return "\n".join([RESULTS_HEAD, *(results_row(cells, c) for c in cells)])


def targets_table(items: Sequence[Target]) -> str:
    lines = [
        "| target | strata | LiteLLM | strata's advantage | goal | met |",
        "|---|--:|--:|--:|--:|---|",
    ]
    for t in items:
        value = rate if t.unit == "req/s" else ms
        ratio = "–" if t.ratio is None else f"{t.ratio:.1f}x"
        met = "not measured" if t.met is None else "yes" if t.met else "**no**"
        lines.append(
            f"| {t.name} ({t.unit}) | {value(t.strata)} | {value(t.litellm)} | {ratio} "
            f"| ≥ {GOAL:.0f}x | {met} |"
        )
    return "\n".join(lines)


def cpu_line(comparison: dict[str, dict[str, float | None]]) -> str:
    parts = []
    for mode, row in comparison.items():
        ratio = "–" if row["ratio"] is None else f"{row['ratio']:.0f}x"
        parts.append(
            f"{mode} {ms(row['strata_ms'])} vs {ms(row['litellm_ms'])} ms (LiteLLM / strata "
            f"{ratio})"
        )
    return (
        "Gateway CPU per request (median over connection counts; robust to other load), "
        f"strata vs LiteLLM: {'; '.join(parts)}."
    )


def guard_section(result: RunResult) -> list[str]:
    """What the guard step costs: `strata-guard` against `strata` (empty without both)."""
    cost = guard_cost(result.cells)
    if not cost:
        return []
    how = result.notes.get("strata-guard", {}).get("guard", "on (defaults)")
    lines = [
        "## The guard step",
        "",
        "`strata-guard` is the same gateway with its guard at the defaults (sanitization, the "
        "trained injection detector, secret/PII detection, the canary) on the same request, "
        f"a one-line user message. Guard: {how}.",
        "",
        "| mode | CPU ms/req off | CPU ms/req on | added by the guard | peak req/s off | "
        "peak req/s on | +p99 ms at 1 conn off | +p99 ms at 1 conn on |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for mode, r in cost.items():
        lines.append(
            f"| {mode} | {ms(r['cpu_ms_off'])} | {ms(r['cpu_ms_on'])} | {ms(r['cpu_ms_added'])} "
            f"| {rate(r['peak_rps_off'])} | {rate(r['peak_rps_on'])} "
            f"| {ms(r['p99_overhead_ms_off'])} | {ms(r['p99_overhead_ms_on'])} |"
        )
    return [*lines, ""]


def markdown(doc: dict[str, Any], result: RunResult) -> str:
    plan = result.plan
    lines = [
        "# strata's gateway vs the LiteLLM proxy",
        "",
        f"Command: `{doc['command']}` ({doc['date']}, {result.wall_s / 60:.1f} min).",
        "",
        "One run, three systems in front of the same mock OpenAI upstream on loopback: the mock "
        "called directly (the baseline), the LiteLLM proxy, and strata's gateway. The client "
        f"(`wrk`, one thread) and the mock (nginx) share core {doc['cores']['client']}; each "
        f"gateway is pinned alone to core {doc['cores']['gateway']}. Each cell: "
        f"{plan.warmup_s:g} s warm-up, then {plan.duration_s:g} s measured, with `conns` "
        f"keep-alive connections each sending the next request as soon as the last answer ends. "
        f"A streamed answer is {plan.chunks} `chat.completion.chunk` events, a usage chunk and "
        "`data: [DONE]`; its latency is the time to the end of the stream.",
        "",
        "## Targets",
        "",
        targets_table(targets(result.cells)),
        "",
        cpu_line(cpu_comparison(result.cells)),
        "",
        *guard_section(result),
        "## Results",
        "",
        results_table(result.cells),
        "",
        *_noise_note(result.cells),
        *_reading_notes(),
        "",
        "## Setup",
        "",
        *_setup_notes(doc, result),
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def _noise_note(cells: Sequence[Cell]) -> list[str]:
    noisy = [c for c in cells if c.foreign_share > NOISY]
    if not noisy:
        return []
    worst = max(c.foreign_share for c in noisy)
    return [
        f"**Noisy run:** in {len(noisy)} of {len(cells)} cells other processes used more than "
        f"{NOISY:.0%} of a core (up to {worst:.0%}); those cells understate the systems.",
        "",
    ]


def _reading_notes() -> list[str]:
    return [
        "- `+p50` / `+p99`: the system's percentile minus the direct call's at the same mode "
        "and connection count: the latency the gateway adds.",
        "- `errors`: connect, read, write and timeout errors plus responses with status ≥ 400.",
        "- `client core (wrk+mock)`: how busy core 0 was (/proc/stat), and in parentheses the "
        "CPU wrk and nginx themselves used, as a share of one core. ⚑ marks cells where the "
        f"latter reached {CLIENT_BOUND:.0%}: the client set the pace, so the rate is a floor for "
        "the system. The direct rows are always client-bound.",
        "- `gateway core (gateway)`: the same for core 1 and the gateway's processes (strata's "
        "include its embedded PostgreSQL, which also runs on core 1); `gateway CPU ms/req` is "
        "their CPU time per request.",
        "- `other load`: the most of either core that other processes used during the cell "
        "(core busy minus the measured processes' share). Above a few percent, the cell is noisy.",
    ]


def _setup_notes(doc: dict[str, Any], result: RunResult) -> list[str]:
    m = doc["machine"]
    load = ", ".join(f"{x:.2f}" for x in result.load_before)
    load_after = ", ".join(f"{x:.2f}" for x in result.load_after)
    lines = [
        f"- Mock: {m['nginx']}, one worker, `return 200` with a canned body (no upstream "
        "work, no access log).",
        f"- Load generator: {m['wrk']}, one thread, Lua script for the POST body and key.",
    ]
    for system, notes in result.notes.items():
        if notes:
            detail = "; ".join(f"{k}: {v}" for k, v in notes.items())
            lines.append(f"- {system}: {detail}.")
    lines += [
        f"- Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}, "
        f"strata {doc['strata_version']}.",
        f"- Load average (1, 5, 15 min) before: {load}; after: {load_after}. Other processes "
        "are not kept off the two cores; `other load` shows when they ran.",
    ]
    return lines


def build(result: RunResult, command: str, header: dict[str, Any]) -> GatewayReport:
    doc = document(result, command, header)
    return GatewayReport(doc, markdown(doc, result))
