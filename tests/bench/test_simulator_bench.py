"""`strata bench simulator`: its pieces, and one small run end to end on a tiny real engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from strata.bench.records import RequestRecord
from strata.bench.shapes import PoissonRate
from strata.bench.simulator_bench import compare, main, real_requests, summary_of
from strata.bench.simulator_report import verdict
from strata.bench.workload import Fixed, Uniform, Workload
from strata.compute.batching import Traffic


def test_real_requests_follow_the_trace_and_never_share_a_prefix_across_runs() -> None:
    traffic = Traffic(Workload(Uniform(5, 50), Fixed(7), seed=2), PoissonRate(2.0, seed=2), 6)
    planned = traffic.sim_requests()
    first, second = real_requests(traffic, 0, 49152), real_requests(traffic, 1, 49152)
    for run in (first, second):
        assert [len(r.prompt_token_ids) for r in run] == [p.prompt_tokens for p in planned]
        assert [r.arrival_s for r in run] == [p.arrival_s for p in planned]
        assert all(r.output_len == 7 for r in run)
    assert all(
        a.prompt_token_ids[:16] != b.prompt_token_ids[:16]
        for a, b in zip(first, second, strict=True)
    )


def test_a_real_run_is_summarized_from_its_first_send() -> None:
    records = [
        RequestRecord(100.0, 100.2, 101.0, [100.2, 101.0], 10, 2),
        RequestRecord(100.5, 100.9, 102.0, [100.9, 102.0], 10, 2),
    ]
    summary = summary_of(records)
    assert summary.duration_s == pytest.approx(2.0)
    assert summary.ttft_ms.p95 == pytest.approx(400.0)
    assert summary.output_throughput == pytest.approx(2.0)


def test_compare_takes_the_median_of_the_real_runs() -> None:
    real = [
        {
            name: value
            for name in ("ttft_p50_ms", "ttft_p95_ms", "e2e_p50_ms", "e2e_p95_ms", "output_tok_s")
        }
        for value in (90.0, 100.0, 150.0)
    ]
    predicted = dict.fromkeys(real[0], 110.0)
    row = compare(real, predicted)
    assert row["ttft_p95_ms"]["real_median"] == 100.0
    assert row["ttft_p95_ms"]["error"] == pytest.approx(0.10)
    assert row["e2e_p95_ms"]["real"] == [90.0, 100.0, 150.0]


def test_the_verdict_judges_the_worst_p95() -> None:
    def row(ttft: float, e2e: float) -> dict[str, Any]:
        errors = {"ttft_p95_ms": {"error": ttft}, "e2e_p95_ms": {"error": e2e}}
        return {
            **errors,
            "jittered": errors,
            "rescaled_errors": {"ttft_p95_ms": 0.01, "e2e_p95_ms": 0.02},
        }

    rows = [row(0.04, -0.08), row(0.02, 0.01)]
    assert "**8.0%**, within the 10% target" in verdict(rows)
    assert "drift removed: 2.0%" in verdict(rows)
    rows[1]["ttft_p95_ms"] = {"error": 0.25}
    assert "**25.0%**, outside" in verdict(rows)


def test_a_small_run_writes_the_report(tiny_llama_folder: Path, tmp_path: Path) -> None:
    main(
        [
            "--model",
            str(tiny_llama_folder),
            "--dtype",
            "float32",
            "--threads",
            "1",
            "--max-num-seqs",
            "2",
            "--max-num-batched-tokens",
            "64",
            "--kv-cache-memory",
            "8MiB",
            "--levels",
            "0.3",
            "0.6",
            "--repeats",
            "2",
            "--requests",
            "4",
            "--saturation-requests",
            "8",
            "--prompt-len",
            "uniform:10:40",
            "--output-len",
            "uniform:2:6",
            "--out",
            str(tmp_path),
        ]
    )
    report = json.loads((tmp_path / "simulator.json").read_text())
    assert report["saturation_rate"] > 0
    assert [row["load"] for row in report["levels"]] == [0.3, 0.6]
    row = report["levels"][0]
    assert len(row["ttft_p95_ms"]["real"]) == 2 and row["ttft_p95_ms"]["predicted"] > 0
    assert len(row["speed_vs_profile"]) == 2
    markdown = (tmp_path / "simulator.md").read_text()
    assert markdown.startswith("# Simulator validation")
    assert (
        "strata bench simulator --model" in markdown and "Largest p95 prediction error" in markdown
    )
    assert (tmp_path / "simulator-profile.json").is_file()
    assert "strata plan batching --profile simulator-profile.json" in markdown
    assert "Recommended: max_num_seqs" in markdown or "No cap and window holds" in markdown


def test_bad_levels_are_refused() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--levels", "0.5", "1.2"])
    assert caught.value.code == 2
