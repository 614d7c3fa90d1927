"""How `strata bench fairness` reads the engine and judges a run (the run itself needs the
bundled model: `strata bench fairness --smoke`)."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from strata.bench.fairness import (
    SMOKE,
    Plan,
    TenantRun,
    a_before_b_p95,
    main,
    markdown,
    seen_by_engine,
)
from strata.bench.records import RequestRecord

SCRAPE = """\
# HELP strata:num_requests_waiting Requests waiting to be scheduled.
# TYPE strata:num_requests_waiting gauge
strata:num_requests_waiting 5.0
strata:num_waiting_fairness_keys 1.0
strata:num_requests_running 2.0
strata:request_success_total{finished_reason="length"} 3.0
strata:request_success_total{finished_reason="stop"} 1.0
strata:request_success_created{finished_reason="stop"} 1.7e9
"""


def test_the_engine_has_seen_waiting_running_and_finished_requests() -> None:
    assert seen_by_engine(SCRAPE) == 11.0


def _record(first_token: float | None, error: str | None = None) -> RequestRecord:
    finished = None if first_token is None else first_token + 1
    return RequestRecord(sent=0.0, first_token=first_token, finished=finished, error=error)


def test_b_position_counts_the_a_requests_that_started_before_its_p95() -> None:
    a = TenantRun([_record(t) for t in (1.0, 2.0, 3.0, 9.0)] + [_record(None, "503")])
    b = TenantRun([_record(2.5), _record(4.0)])
    assert a_before_b_p95(a, b) == 3
    assert a_before_b_p95(a, TenantRun([_record(None, "timeout")])) is None
    assert a.row() == {"requests": 5, "ok": 4, "ttft_p50_ms": 2000.0, "ttft_p95_ms": 9000.0}


def test_the_markdown_names_the_command_and_flags_a_smoke_run() -> None:
    row = {"requests": 2, "ok": 2, "ttft_p50_ms": 10.0, "ttft_p95_ms": 20.0}
    report = {
        "command": "strata bench fairness --smoke", "when": "now", "machine": "here",
        "plan": asdict(SMOKE),
        "policies": {p: {"A": row, "B": row, "a_before_b_p95": 1} for p in ("fcfs", "fair")},
    }  # fmt: skip
    text = markdown(report)
    assert "`strata bench fairness --smoke`" in text and "Smoke run" in text
    assert "| fair | B | 2 | 2 | 10.0 | 20.0 |" in text
    assert "Smoke run" not in markdown({**report, "plan": asdict(Plan())})


@pytest.mark.parametrize("args", [["--flood", "4", "--max-num-seqs", "8"], ["--few", "0"]])
def test_sizes_that_cannot_measure_anything_are_refused(args: list[str]) -> None:
    with pytest.raises(SystemExit):
        main(args)
