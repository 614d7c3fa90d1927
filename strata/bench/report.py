"""Benchmark reports: a JSON document and a Markdown page per run, both naming the command.

`load_report` covers one load level, `sweep_report` a rate sweep. `Report.write(out_dir)` writes
`serve-<name>.json` and `serve-<name>.md`. JSON has no NaN: a latency without samples is null.
Nothing here measures or sends anything.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strata import __version__
from strata.bench.loadgen import LoadResult
from strata.bench.records import RequestRecord
from strata.bench.slo import Slo
from strata.bench.summary import Distribution, Summary
from strata.bench.sweep import Probe, SweepResult

LATENCIES = (("TTFT", "ttft_ms"), ("ITL", "itl_ms"), ("TPOT", "tpot_ms"), ("E2E", "e2e_ms"))


@dataclass(frozen=True)
class Report:
    name: str
    document: dict[str, Any]
    markdown: str
    any_succeeded: bool  # False: every request failed, the numbers measure nothing

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path, md_path = (out_dir / f"serve-{self.name}.{ext}" for ext in ("json", "md"))
        text = json.dumps(_finite(self.document), indent=2, allow_nan=False)
        json_path.write_text(text + "\n", encoding="utf-8")
        md_path.write_text(self.markdown, encoding="utf-8")
        return json_path, md_path


# -- JSON -----------------------------------------------------------------------------------


def load_report(result: LoadResult, command: str, name: str) -> Report:
    document = {
        **_header(name, command),
        "config": result.describe(),
        "summary": summary_json(result.summary),
        "requests": requests_json(result.records),
    }
    markdown = load_markdown(result, command, name)
    return Report(name, document, markdown, result.summary.succeeded > 0)


def sweep_report(sweep: SweepResult, command: str, name: str) -> Report:
    document = {
        **_header(name, command),
        "config": {**_sweep_config(sweep), "plan": asdict(sweep.plan)},
        "best_rate": sweep.best_rate,
        "probes": [
            {"rate": p.rate, "held": p.held, "summary": summary_json(p.result.summary)}
            for p in sweep.probes
        ],
    }
    succeeded = any(p.result.summary.succeeded for p in sweep.probes)
    return Report(name, document, sweep_markdown(sweep, command, name), succeeded)


def summary_json(summary: Summary) -> dict[str, Any]:
    return {
        **asdict(summary),
        "failed": summary.failed,
        "error_rate": summary.error_rate,
        "request_throughput": summary.request_throughput,
        "output_throughput": summary.output_throughput,
        "total_throughput": summary.total_throughput,
        "goodput": summary.goodput,
    }


def requests_json(records: list[RequestRecord]) -> list[dict[str, Any]]:
    """One row per request; `sent_s` counts from the first send."""
    start = min((r.sent for r in records), default=0.0)
    return [
        {
            "sent_s": r.sent - start,
            "ttft_ms": _ms(r.ttft),
            "tpot_ms": _ms(r.mean_itl),
            "e2e_ms": _ms(r.e2e),
            "chunks": len(r.token_times),
            "prompt_tokens": r.prompt_tokens,
            "output_tokens": r.output_tokens,
            "error": r.error,
        }
        for r in records
    ]


def _header(name: str, command: str) -> dict[str, Any]:
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return {"benchmark": "strata bench serve", "name": name, "created": created,
            "strata_version": __version__, "command": command}  # fmt: skip


def _sweep_config(sweep: SweepResult) -> dict[str, Any]:
    if not sweep.probes:
        return {"slo": sweep.slo.describe()}
    return {**sweep.probes[0].result.describe(), "shape": {"kind": "poisson sweep"}}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as None and floats rounded to 3 decimals."""
    if isinstance(value, float):
        return round(value, 3) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


# -- Markdown -------------------------------------------------------------------------------


def load_markdown(result: LoadResult, command: str, name: str) -> str:
    parts = [
        f"# strata bench serve: {name}",
        _command_block(command),
        _settings_table(result, result.shape.label),
        latency_table(result.summary),
        results_table(result.summary),
        errors_table(result.summary),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def sweep_markdown(sweep: SweepResult, command: str, name: str) -> str:
    best = sweep.best
    parts = [f"# strata bench serve --sweep: {name}", _command_block(command)]
    if sweep.probes:
        plan = sweep.plan
        load = f"Poisson sweep from {plan.start_rate:g} req/s (max {plan.max_rate:g})"
        parts.append(_settings_table(sweep.probes[0].result, load))
    parts += [_best_line(sweep), probes_table(sweep)]
    if best is not None:
        parts += [f"## At {best.rate:.3g} req/s", latency_table(best.result.summary)]
        parts += [results_table(best.result.summary), errors_table(best.result.summary)]
    return "\n\n".join(part for part in parts if part) + "\n"


def _command_block(command: str) -> str:
    return f"```sh\n{command}\n```"


def _settings_table(result: LoadResult, load: str) -> str:
    target, workload, budget = result.target, result.workload, result.budget
    rows = [
        ("target", f"{target.base_url} (`{target.endpoint.name}`)"),
        ("model", f"`{target.model}`"),
        ("load", load),
        ("budget", _budget_text(budget.requests, budget.duration_s)),
        ("prompt tokens", f"`{workload.prompt_len.spec}` words ≈ tokens, on the server's count"),
        ("output tokens", f"`{workload.output_len.spec}`" + _eos_text(target.ignore_eos)),
        ("shared prefix", f"{workload.shared_prefix_tokens} tokens"),
        ("seed", str(workload.seed)),
        ("SLO", slo_text(result.slo)),
    ]
    return _table(("setting", "value"), rows)


def latency_table(summary: Summary) -> str:
    rows = [(label, *_stats(getattr(summary, attr))) for label, attr in LATENCIES]
    return _table(("latency (ms)", "mean", "p50", "p90", "p95", "p99"), rows)


def results_table(summary: Summary) -> str:
    s = summary
    rows = [
        ("requests", f"{s.requests} sent, {s.succeeded} succeeded, {s.failed} failed"),
        ("duration", f"{s.duration_s:.2f} s"),
        ("request throughput", f"{s.request_throughput:.2f} req/s"),
        ("output token throughput", f"{s.output_throughput:.1f} tok/s"),
        ("total token throughput", f"{s.total_throughput:.1f} tok/s"),
        ("tokens in / out", f"{s.prompt_tokens} / {s.output_tokens}"),
    ]
    if s.goodput is not None:
        rows.append(("goodput", f"{s.goodput:.2f} req/s ({s.slo_met} met the SLO)"))
    return _table(("result", "value"), rows)


def errors_table(summary: Summary) -> str:
    rows = [
        (kind, str(count), summary.error_examples.get(kind, "").replace("|", "\\|"))
        for kind, count in sorted(summary.errors.items())
    ]
    return _table(("error", "count", "example"), rows) if rows else ""


def probes_table(sweep: SweepResult) -> str:
    header = ("rate (req/s)", "held", "requests", "errors", "TTFT p95 (ms)", "ITL p95 (ms)",
              "E2E p95 (ms)", "output tok/s", "goodput (req/s)")  # fmt: skip
    return _table(header, [_probe_row(p) for p in sorted(sweep.probes, key=lambda p: p.rate)])


def _probe_row(probe: Probe) -> tuple[str, ...]:
    s = probe.result.summary
    return (
        f"{probe.rate:.3g}",
        "yes" if probe.held else "no",
        str(s.requests),
        f"{s.error_rate:.1%}",
        _num(s.ttft_ms.p95),
        _num(s.itl_ms.p95),
        _num(s.e2e_ms.p95),
        f"{s.output_throughput:.1f}",
        _num(s.goodput),
    )


def slo_text(slo: Slo | None) -> str:
    if slo is None:
        return "none"
    limits = [("TTFT", slo.ttft_ms), ("ITL", slo.itl_ms), ("E2E", slo.e2e_ms)]
    held = ", ".join(f"{label} p95 ≤ {limit:g} ms" for label, limit in limits if limit)
    return f"{held}, errors ≤ {slo.max_error_rate:.0%}"


def _best_line(sweep: SweepResult) -> str:
    if sweep.best_rate is None:
        return "**No probed rate held the SLO.**"
    return f"**Highest rate holding the SLO: {sweep.best_rate:.3g} req/s** ({slo_text(sweep.slo)})"


def _budget_text(requests: int | None, duration_s: float | None) -> str:
    if requests and duration_s:
        return f"{requests} requests or {duration_s:g} s, whichever comes first"
    return f"{requests} requests" if requests else f"{duration_s:g} s"


def _eos_text(ignore_eos: bool) -> str:
    return " (exact: `ignore_eos`, `min_tokens`)" if ignore_eos else " (at most: EOS may end early)"


def _stats(d: Distribution) -> tuple[str, ...]:
    return tuple(_num(v) for v in (d.mean, d.p50, d.p90, d.p95, d.p99))


def _num(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.1f}"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
