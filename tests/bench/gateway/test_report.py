from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from strata.bench.gateway.report import (
    build,
    cpu_comparison,
    find,
    guard_cost,
    overhead_ms,
    p99_overhead_target,
    rate_target,
    results_row,
    targets,
)
from strata.bench.gateway.run import Cell, Plan, RunResult
from strata.bench.gateway.wrk import Errors, WrkResult


def wrk(rps: float, p50: float, p99: float, status_errors: int = 0) -> WrkResult:
    errors = Errors(connect=0, read=1, write=0, timeout=0, status=status_errors)
    return WrkResult(
        requests=int(rps * 10), duration_s=10.0, bytes=1000, errors=errors, mean_ms=p50,
        max_ms=p99 * 2, p50_ms=p50, p90_ms=p99 * 0.8, p95_ms=p99 * 0.9, p99_ms=p99,
    )  # fmt: skip


def cell(system: str, mode: str, conns: int, rps: float, p50: float, p99: float) -> Cell:
    gateway = None if system == "direct" else 0.95
    per_request = None if system == "direct" else 950 / rps
    return Cell(system, mode, conns, wrk(rps, p50, p99), 0.5, 0.3 if gateway else 1.0,
                1.0, gateway, per_request)  # fmt: skip


CELLS = [
    cell("direct", "non-streaming", 1, 50_000, 0.02, 0.05),
    cell("direct", "non-streaming", 8, 70_000, 0.1, 0.2),
    cell("direct", "streaming", 1, 45_000, 0.02, 0.06),
    cell("litellm", "non-streaming", 1, 60, 16.0, 21.0),
    cell("litellm", "non-streaming", 8, 65, 110.0, 175.0),
    cell("litellm", "streaming", 1, 25, 40.0, 52.0),
    cell("strata", "non-streaming", 1, 1500, 0.6, 1.05),
    cell("strata", "non-streaming", 8, 5000, 1.5, 3.0),
    cell("strata", "streaming", 1, 200, 4.0, 9.06),
]
PLAN = Plan(("direct", "litellm", "strata"), (1, 8), 10.0, 2.0, 20)
RESULT = RunResult(PLAN, CELLS, {"litellm": {"auth": "master key"}}, (0.1, 0.2, 0.3),
                   (0.4, 0.5, 0.6), 300.0)  # fmt: skip
HEADER = {
    "date": "2026-11-29 14:00 UTC",
    "strata_version": "0.1.0",
    "cores": {"client": 0, "gateway": 1},
    "machine": {"cpu": "Xeon", "cores": 2, "kernel": "6.1", "python": "3.11.7",
                "wrk": "wrk 4.1.0", "nginx": "nginx/1.22.1"},
}  # fmt: skip


def test_overhead_is_against_direct_at_the_same_mode_and_connections() -> None:
    litellm = find(CELLS, "litellm", "non-streaming", 8)
    assert litellm is not None
    assert overhead_ms(CELLS, litellm) == pytest.approx((109.9, 174.8))
    direct = find(CELLS, "direct", "non-streaming", 1)
    assert direct is not None and overhead_ms(CELLS, direct) is None


def test_overhead_without_a_baseline_is_none() -> None:
    streaming = find(CELLS, "strata", "streaming", 1)
    assert streaming is not None
    assert overhead_ms([c for c in CELLS if c.system != "direct"], streaming) is None


def test_rate_target_uses_each_systems_peak() -> None:
    t = rate_target(CELLS, "non-streaming")
    assert (t.strata, t.litellm) == (5000, 65)
    assert t.ratio == pytest.approx(5000 / 65) and t.met is True
    assert rate_target(CELLS, "streaming").met is False  # 200 vs 25: 8x


def test_p99_overhead_target_at_one_connection() -> None:
    t = p99_overhead_target(CELLS, "non-streaming")
    assert t.strata == pytest.approx(1.0) and t.litellm == pytest.approx(20.95)
    assert t.met is True and t.ratio == pytest.approx(20.95)
    assert p99_overhead_target(CELLS, "streaming").met is False  # 9 ms vs 51.94 ms


def test_targets_without_strata_are_not_measured() -> None:
    items = targets([c for c in CELLS if c.system != "strata"])
    assert [t.met for t in items] == [None] * 4


def test_results_row_flags_a_client_bound_cell() -> None:
    direct = results_row(CELLS, CELLS[0])
    assert "50,000 ⚑" in direct and "| – | – |" in direct  # no overhead for the baseline
    strata = results_row(CELLS, CELLS[6])
    assert "1,500 |" in strata and "⚑" not in strata
    assert "| 0.580 | 1.00 |" in strata  # +p50, +p99
    assert "50% (30%)" in strata and "100% (95%)" in strata  # client and gateway cores


def test_build_writes_json_and_markdown(tmp_path: Path) -> None:
    report = build(RESULT, "strata bench gateway --duration-s 10", HEADER)
    json_path, md_path = report.write(tmp_path)
    doc = json.loads(json_path.read_text())
    assert doc["command"] == "strata bench gateway --duration-s 10"
    assert len(doc["cells"]) == len(CELLS)
    first = doc["cells"][0]
    assert first["overhead_ms"] is None and first["gateway_cpu_ms_per_request"] is None
    assert doc["cells"][3]["overhead_ms"] == {"p50": 15.98, "p99": 20.95}
    assert doc["cells"][3]["errors"]["total"] == 1
    assert [t["met"] for t in doc["targets"]] == [True, False, True, False]
    md = md_path.read_text()
    assert "`strata bench gateway --duration-s 10`" in md
    assert "| peak request rate, non-streaming (req/s) | 5,000 | 65.0 | 76.9x | ≥ 10x | yes |" in md
    assert "master key" in md and "Xeon, 2 cores" in md


def test_noise_is_called_out_only_when_other_processes_ran() -> None:
    noisy = build(RESULT, "c", HEADER).markdown
    assert f"in {len(CELLS)} of {len(CELLS)} cells other processes used more than 10%" in noisy
    quiet_cells = [
        replace(
            c, client_core_busy=c.client_cpu_share, gateway_core_busy=c.gateway_cpu_share or 0.0
        )
        for c in CELLS
    ]
    assert "Noisy run" not in build(replace(RESULT, cells=quiet_cells), "c", HEADER).markdown


def test_cpu_comparison_uses_the_median_per_request_cpu() -> None:
    comparison = cpu_comparison(CELLS)["non-streaming"]
    assert comparison["strata_ms"] == pytest.approx((950 / 1500 + 950 / 5000) / 2)
    assert comparison["litellm_ms"] == pytest.approx((950 / 60 + 950 / 65) / 2)
    assert comparison["ratio"] == pytest.approx((950 / 60 + 950 / 65) / (950 / 1500 + 950 / 5000))
    assert "Gateway CPU per request" in build(RESULT, "c", HEADER).markdown
    no_strata = cpu_comparison([c for c in CELLS if c.system != "strata"])["streaming"]
    assert no_strata == {"strata_ms": None, "litellm_ms": pytest.approx(38.0), "ratio": None}


def test_guard_cost_compares_strata_with_and_without_its_guard() -> None:
    assert guard_cost(CELLS) == {}
    assert "## The guard step" not in build(RESULT, "c", HEADER).markdown
    guarded = [
        cell("strata-guard", "non-streaming", 1, 1000, 0.9, 1.45),
        cell("strata-guard", "non-streaming", 8, 4000, 2.0, 4.0),
    ]
    cost = guard_cost(CELLS + guarded)["non-streaming"]
    assert cost["cpu_ms_off"] == pytest.approx((950 / 1500 + 950 / 5000) / 2)
    assert cost["cpu_ms_on"] == pytest.approx((950 / 1000 + 950 / 4000) / 2)
    assert cost["cpu_ms_added"] == pytest.approx(cost["cpu_ms_on"] - cost["cpu_ms_off"])
    assert (cost["peak_rps_off"], cost["peak_rps_on"]) == (5000, 4000)
    assert cost["p99_overhead_ms_on"] == pytest.approx(1.45 - 0.05)
    streaming = guard_cost(CELLS + guarded)["streaming"]
    assert streaming["cpu_ms_on"] is None and streaming["cpu_ms_added"] is None
    notes = {"strata-guard": {"guard": "on (defaults); MiniLM never runs"}}
    md = build(replace(RESULT, cells=CELLS + guarded, notes=notes), "c", HEADER).markdown
    assert "## The guard step" in md and "| non-streaming | 0.412 | 0.594 | 0.182 |" in md
    assert "Guard: on (defaults); MiniLM never runs." in md
