"""The observability report from synthetic results: strict JSON (no NaN), and a Markdown page
that states what each side measured, every round, and the verdicts."""

from __future__ import annotations

import json
from pathlib import Path

from strata.bench.observability.accuracy import ENGINE_TTFT, GATEWAY_TTFT, AccuracyPlan
from strata.bench.observability.accuracy import AccuracyResult as Accuracy
from strata.bench.observability.main import write
from strata.bench.observability.overhead import OverheadPlan, OverheadResult, Run
from strata.bench.observability.report import accuracy_summary, overhead_summary
from strata.bench.observability.stats import Matched, TtftPair


def _accuracy(pairs: int = 3) -> Accuracy:
    matched = Matched(
        tuple(TtftPair(f"req-{i}", 120.0 + i, 117.5 + i, 60.0 + i) for i in range(pairs)), 1
    )
    p50 = {GATEWAY_TTFT: 118.0, ENGINE_TTFT: None}
    return Accuracy(AccuracyPlan(requests=pairs + 1), matched, 0, p50)


def _overhead(rounds: int) -> OverheadResult:
    speeds = {"off": 100.0, "on": 99.5, "otel": 97.0}
    runs = [
        Run(number, position, arm, int(speeds[arm] * 10), 10.0, 0)
        for number in range(rounds)
        for position, arm in enumerate(("on", "off", "otel") if number % 2 else speeds)
    ]
    recorded = {"off": 0.0, "on": 48.0 * rounds, "otel": 48.0 * rounds}
    exports = {"/v1/traces": 7, "/v1/metrics": 3}
    return OverheadResult(OverheadPlan(rounds=rounds), ("off", "on", "otel"), tuple(runs),
                          recorded, exports)  # fmt: skip


def _write(tmp_path: Path, accuracy: Accuracy | None, overhead: OverheadResult | None) -> str:
    data = {
        "command": "strata bench observability --test",
        "model": "tiny",
        "accuracy": None if accuracy is None else accuracy_summary(accuracy),
        "overhead": None if overhead is None else overhead_summary(overhead),
    }
    written = write(data, tmp_path)
    assert json.loads((tmp_path / "observability.json").read_text()) == written
    return (tmp_path / "observability.md").read_text()


def test_the_page_shows_both_parts(tmp_path: Path) -> None:
    page = _write(tmp_path, _accuracy(), _overhead(12))
    assert "Command: `strata bench observability --test`" in page
    assert "| client | the load generator starts sending the request" in page
    assert "p50 **2.5 ms**" in page and "Within 5 ms at p50: **yes**" in page
    assert "| on / off | 0.9950 |" in page and "**holds**" in page
    assert "| otel / off | 0.9700 |" in page and "**fails**" in page
    assert page.count("\n| 12 | ") == 1  # one row per round
    assert "`off` 0, `on` 576, `otel` 576" in page and "/v1/traces 7" in page
    assert "fewer than the 10 pairs" not in page


def test_the_json_holds_every_run_and_request(tmp_path: Path) -> None:
    _write(tmp_path, _accuracy(), _overhead(10))
    data = json.loads((tmp_path / "observability.json").read_text())
    assert len(data["overhead"]["runs"]) == 30
    assert data["overhead"]["comparisons"]["on"]["verdict"] == "holds"
    assert len(data["accuracy"]["requests"]) == 3 and data["accuracy"]["unmatched"] == 1
    assert data["accuracy"]["within_bound"] is True
    assert {"command", "when", "machine", "model"} <= data.keys()


def test_nothing_matched_is_null_not_nan(tmp_path: Path) -> None:
    page = _write(tmp_path, _accuracy(pairs=0), None)
    data = json.loads((tmp_path / "observability.json").read_text())
    assert (
        data["accuracy"]["difference_p50_ms"] is None and data["accuracy"]["within_bound"] is None
    )
    assert "not measured" in page and "(overhead: not run)" in page


def test_a_short_run_says_it_is_indicative_only(tmp_path: Path) -> None:
    page = _write(tmp_path, None, _overhead(2))
    assert "Only 2 rounds: fewer than the 10 pairs" in page and "(accuracy: not run)" in page
