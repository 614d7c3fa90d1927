"""Reports built from hand-made results: JSON without NaN or secrets, Markdown with the
command, the latency table, the errors and the sweep's probes."""

from __future__ import annotations

import json
from pathlib import Path

from strata.bench.client import Target
from strata.bench.loadgen import LoadResult
from strata.bench.records import RequestRecord
from strata.bench.report import load_report, sweep_report
from strata.bench.shapes import Budget, FixedConcurrency, PoissonRate
from strata.bench.slo import Slo
from strata.bench.summary import summarize
from strata.bench.sweep import Probe, SweepPlan, SweepResult
from strata.bench.workload import Fixed, Uniform, Workload

COMMAND = "strata bench serve --url http://h:1/v1 --api-key '***' --concurrency 2"
TARGET = Target("http://h:1/v1", api_key="s3cret", model="tiny")
WORKLOAD = Workload(Uniform(10, 20), Fixed(3), seed=4)


def result(records: list[RequestRecord], slo: Slo | None = None, rate: float = 0) -> LoadResult:
    shape = PoissonRate(rate) if rate else FixedConcurrency(2)
    summary = summarize(records, 2.0, slo)
    return LoadResult(TARGET, WORKLOAD, shape, Budget(requests=3), slo, records, 2.0, summary)


def ok(sent: float, ttft: float = 0.25) -> RequestRecord:
    first = sent + ttft
    times = [first, first + 0.125, first + 0.25]
    return RequestRecord(sent, first, first + 0.5, times, prompt_tokens=20, output_tokens=3)


def failed(sent: float) -> RequestRecord:
    return RequestRecord(sent, error="503", error_detail="the queue | is full")


def test_load_report_json(tmp_path: Path) -> None:
    report = load_report(
        result([ok(10.0), ok(10.5), failed(11.0)], Slo(ttft_ms=300)), COMMAND, "c2"
    )
    json_path, md_path = report.write(tmp_path / "out")
    assert (json_path.name, md_path.name) == ("serve-c2.json", "serve-c2.md")
    text = json_path.read_text(encoding="utf-8")
    assert "NaN" not in text and "s3cret" not in text
    document = json.loads(text)
    assert document["command"] == COMMAND and document["name"] == "c2"
    assert document["config"]["model"] == "tiny" and document["config"]["url"] == "http://h:1/v1"
    assert document["config"]["shape"] == {"kind": "concurrency", "concurrency": 2}
    assert document["config"]["workload"]["prompt_len"] == "uniform:10:20"
    summary = document["summary"]
    assert summary["errors"] == {"503": 1} and summary["succeeded"] == 2
    assert summary["ttft_ms"]["p50"] == 250 and summary["goodput"] == 1.0
    assert [row["sent_s"] for row in document["requests"]] == [0, 0.5, 1.0]
    assert document["requests"][2]["ttft_ms"] is None and document["requests"][2]["error"] == "503"
    assert report.any_succeeded


def test_load_report_markdown() -> None:
    report = load_report(result([ok(0.0), failed(1.0)], Slo(ttft_ms=300, itl_ms=50)), COMMAND, "x")
    md = report.markdown
    assert f"```sh\n{COMMAND}\n```" in md
    assert "| TTFT | 250.0 | 250.0 | 250.0 | 250.0 | 250.0 |" in md
    assert "| ITL | 125.0 |" in md and "| E2E | 750.0 |" in md
    assert "| load | fixed concurrency 2 |" in md
    assert "TTFT p95 ≤ 300 ms, ITL p95 ≤ 50 ms, errors ≤ 1%" in md
    assert "| goodput | 0.00 req/s (0 met the SLO) |" in md  # a TPOT of 125 ms breaks 50
    assert "| 503 | 1 | the queue \\| is full |" in md
    assert "| output token throughput | 1.5 tok/s |" in md


def test_a_run_where_everything_failed_says_so() -> None:
    report = load_report(result([failed(0.0), failed(1.0)]), COMMAND, "bad")
    assert not report.any_succeeded
    assert "| TTFT | – | – |" in report.markdown
    assert json.loads(json.dumps(report.document))["summary"]["errors"] == {"503": 2}


def sweep() -> SweepResult:
    slo = Slo(ttft_ms=400)
    probes = [
        Probe(1.0, True, result([ok(0.0), ok(1.0)], slo, rate=1.0)),
        Probe(2.0, False, result([ok(0.0, ttft=0.5), ok(1.0, ttft=0.5)], slo, rate=2.0)),
        Probe(1.5, True, result([ok(0.0), ok(1.0, ttft=0.375)], slo, rate=1.5)),
    ]
    return SweepResult(SweepPlan(start_rate=1.0, max_rate=8.0), slo, probes)


def test_sweep_report(tmp_path: Path) -> None:
    report = sweep_report(sweep(), COMMAND + " --sweep", "sweep")
    document = json.loads(report.write(tmp_path)[0].read_text(encoding="utf-8"))
    assert document["best_rate"] == 1.5
    assert [(p["rate"], p["held"]) for p in document["probes"]] == [
        (1, True),
        (2, False),
        (1.5, True),
    ]
    assert document["config"]["plan"]["max_rate"] == 8.0
    md = report.markdown
    assert "**Highest rate holding the SLO: 1.5 req/s**" in md
    lines = [line for line in md.splitlines() if line.startswith(("| 1 |", "| 1.5 |", "| 2 |"))]
    assert [line.split(" | ")[1] for line in lines] == ["yes", "yes", "no"]  # sorted by rate
    assert "## At 1.5 req/s" in md and "Poisson sweep from 1 req/s (max 8)" in md


def test_a_sweep_where_nothing_held() -> None:
    nothing = SweepResult(SweepPlan(), Slo(ttft_ms=1), [])
    report = sweep_report(nothing, COMMAND, "sweep")
    assert "No probed rate held the SLO" in report.markdown and report.document["best_rate"] is None
    assert not report.any_succeeded
