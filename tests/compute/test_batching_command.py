"""`strata plan batching` as a user runs it (through the `strata plan` app)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strata.compute.commands import plan_app
from strata.compute.profile import EngineProfile, EngineSizes
from strata.compute.step_time import StepShape, StepTimeModel

runner = CliRunner()


@pytest.fixture
def profile_path(tmp_path: Path) -> Path:
    sizes = EngineSizes(
        block_size=16,
        num_blocks=4000,
        max_model_len=1024,
        max_num_seqs=8,
        max_num_batched_tokens=256,
        max_waiting=64,
        dtype="bfloat16",
        threads=2,
    )
    steps = [(StepShape(8, 8, 512, 0), 0.11)]
    model = StepTimeModel({"base": 0.1, "tokens": 0.001}, (0.95, 1.05))
    path = tmp_path / "profile.json"
    EngineProfile(sizes, model, steps, {"date": "2025-06-01 12:00"}).write(path)
    return path


def args(profile: Path, *extra: str) -> list[str]:
    return [
        "batching",
        "--profile",
        str(profile),
        "--rate",
        "2",
        "--slo-ttft-p95-ms",
        "500",
        "--prompt-tokens",
        "20",
        "--output-tokens",
        "10",
        "--requests",
        "30",
        *extra,
    ]


def test_the_table_and_the_recommendation(profile_path: Path) -> None:
    result = runner.invoke(plan_app, args(profile_path, "--caps", "1,8", "--windows-ms", "0,20"))
    assert result.exit_code == 0, result.output
    out = result.output
    for text in (
        "Traffic: Poisson arrivals 2 req/s",
        "SLO: p95 TTFT <= 500 ms",
        "token budget 256 per step",
        "bfloat16, 2 threads",
        "TTFT p95 ms",
        "max req/s in SLO",
        "breaks",
        "holds",
        "Recommended: max_num_seqs 8",
    ):
        assert text in out
    assert len([line for line in out.splitlines() if line.strip().startswith(("1 ", "8"))]) == 4


def test_json(profile_path: Path) -> None:
    result = runner.invoke(
        plan_app,
        args(
            profile_path, "--caps", "4,8", "--windows-ms", "0", "--arrivals", "constant", "--json"
        ),
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["traffic"]["arrivals"] == {"kind": "constant", "rate": 2.0}
    assert document["traffic"]["workload"]["prompt_len"] == "20"
    assert [c["max_num_seqs"] for c in document["candidates"]] == [4, 8]
    first = document["candidates"][0]
    assert {
        "ttft_p50_ms",
        "ttft_p95_ms",
        "e2e_p95_ms",
        "request_throughput",
        "holds_slo",
        "max_rate_within_slo",
    } <= first.keys()
    assert document["recommended"]["max_num_seqs"] in (4, 8)
    assert document["profile"]["block_size"] == 16


def test_caps_default_to_powers_of_two_up_to_the_profiled_cap(profile_path: Path) -> None:
    result = runner.invoke(plan_app, args(profile_path, "--windows-ms", "0", "--json"))
    caps = [c["max_num_seqs"] for c in json.loads(result.output)["candidates"]]
    assert caps == [2, 4, 8]


def test_caps_over_the_profiled_batch_are_flagged(profile_path: Path) -> None:
    result = runner.invoke(plan_app, args(profile_path, "--caps", "16", "--windows-ms", "0"))
    assert result.exit_code == 0, result.output
    assert "caps [16] extrapolate" in result.output


def test_an_impossible_slo_says_so(profile_path: Path) -> None:
    argv = args(profile_path, "--caps", "8", "--windows-ms", "0")
    argv[argv.index("--slo-ttft-p95-ms") + 1] = "50"
    result = runner.invoke(plan_app, argv)
    assert result.exit_code == 0, result.output
    assert "No cap and window holds the SLO at 2 req/s" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--caps", "4,x"], "--caps '4,x': give comma-separated numbers"),
        (["--caps", "0,4"], "--caps '0,4': every cap must be a whole number >= 1"),
        (["--caps", "2.5"], "every cap must be a whole number"),
        (["--windows-ms", "-5"], "--windows-ms '-5': every window must be 0-10000 ms"),
        (["--windows-ms", ","], "--windows-ms ',': give at least one value"),
        (["--prompt-tokens", "uniform:9"], "--prompt-tokens 'uniform:9'"),
        (["--output-tokens", "1010"], "--output-tokens: the longest prompt plus output is 1030"),
        (["--arrivals", "bursty"], "--arrivals 'bursty': use poisson or constant"),
        (["--token-budget", "0"], "--token-budget 0: must be >= 1"),
        (["--requests", "0"], "--requests: must be >= 1"),
        (["--shared-prefix-tokens", "-1"], "--shared-prefix-tokens -1: must be >= 0"),
        (["--slo-e2e-p95-ms", "0"], "--slo-e2e-p95-ms 0: must be > 0"),
    ],
)
def test_bad_input_names_the_option(profile_path: Path, extra: list[str], message: str) -> None:
    result = runner.invoke(plan_app, args(profile_path, *extra))
    assert result.exit_code == 2
    assert message in result.output


def test_bad_rate_and_slo_name_the_option(profile_path: Path) -> None:
    for option, value, message in [
        ("--rate", "0", "--rate 0: must be > 0 requests per second"),
        ("--slo-ttft-p95-ms", "-1", "--slo-ttft-p95-ms -1: must be > 0"),
    ]:
        argv = args(profile_path)
        argv[argv.index(option) + 1] = value
        result = runner.invoke(plan_app, argv)
        assert result.exit_code == 2 and message in result.output


def test_a_missing_profile_says_how_to_make_one(tmp_path: Path) -> None:
    result = runner.invoke(plan_app, args(tmp_path / "none.json"))
    assert result.exit_code == 2
    assert "--profile" in result.output and "strata bench engine --profile" in result.output
