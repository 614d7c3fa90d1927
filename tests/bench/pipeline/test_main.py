"""`strata bench pipeline` end to end, tiny: its own two embedded servers, the real MiniLM, 50
documents, one rate for a few seconds; the files it writes say what the pipeline did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strata.bench.pipeline.main import main


@pytest.mark.slow
def test_a_tiny_run_writes_both_files_with_the_pipelines_numbers(tmp_path: Path) -> None:
    argv = ["--documents", "50", "--rates", "10", "--seconds-per-rate", "3", "--out", str(tmp_path)]
    main(argv)
    data = json.loads((tmp_path / "pipeline.json").read_text())
    assert data["command"] == "strata bench pipeline " + " ".join(argv)
    assert data["backfill"]["documents"] == 50
    # identical chunk texts in two tickets are embedded once
    assert 50 < data["backfill"]["embedded"] <= data["backfill"]["chunks"]
    [step] = data["steps"]
    assert step["changes"] == 30
    assert step["freshness"]["samples"] == 30  # one pipeline sample per transaction
    assert 0 < step["freshness"]["p50_s"] <= step["freshness"]["p95_s"] < 30
    costs = data["embeddings_by_kind"]
    assert {k: c["changes"] for k, c in costs.items()} == {
        "text_edit": 12,
        "non_text_edit": 9,
        "insert": 6,
        "delete": 3,
    }
    assert costs["non_text_edit"]["embedded"] == 0
    assert costs["insert"]["embedded"] == costs["insert"]["whole_document"] > 0
    assert 0 < costs["text_edit"]["embedded"] < costs["text_edit"]["whole_document"]
    assert costs["delete"] == {"changes": 3, "embedded": 0, "reused": 0, "whole_document": 0}
    assert "# CDC pipeline" in (tmp_path / "pipeline.md").read_text()
