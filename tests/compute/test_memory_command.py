"""`strata plan memory` as a user runs it (through the `strata plan` app)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from strata.compute.commands import plan_app

runner = CliRunner()
SEED = ["memory", "--model", "llama-3-70b", "--weights", "int4", "--gpu", "a100-80gb",
        "--context", "8192", "--concurrency", "8"]  # fmt: skip


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [key for key in os.environ if key.startswith("STRATA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STRATA_CONFIG", "")
    monkeypatch.chdir(tmp_path)


def config(tmp_path: Path, settings: dict[str, object]) -> str:
    path = tmp_path / "strata.yaml"
    path.write_text(yaml.safe_dump(settings))
    return str(path)


def test_memory_for_the_seeds_case() -> None:
    result = runner.invoke(plan_app, SEED)
    assert result.exit_code == 0, result.output
    assert "KV per token: 320.0 KiB (327,680 B)" in result.output
    assert (
        "Largest concurrency before the KV cache spills: 12 requests at 8,192 tokens"
        in result.output
    )
    assert "--concurrency 8: fits" in result.output


def test_memory_explain_shows_what_it_would_take() -> None:
    result = runner.invoke(plan_app, [*SEED, "--explain"])
    assert result.exit_code == 0, result.output
    for text in ("Step by step", "What it would take for 8 concurrent requests to spill",
                 "context per request", "KV-cache dtype", "Assumptions"):  # fmt: skip
        assert text in result.output


def test_memory_json() -> None:
    result = runner.invoke(plan_app, [*SEED, "--json", "--explain"])
    document = json.loads(result.output)
    assert document["kv"]["bytes_per_token"] == 327_680
    assert document["max_concurrency"] == 12 and document["concurrency"]["fits"] is True
    assert document["what_it_would_take"]["concurrency"] == 8


def test_memory_custom_gpu_and_tensor_parallelism() -> None:
    args = ["memory", "--model", "llama-3-70b", "--gpu-memory", "48GiB", "--tp", "2",
            "--weights", "fp8", "--context", "4096", "--json"]  # fmt: skip
    document = json.loads(runner.invoke(plan_app, args).output)
    assert document["gpu"] == {"name": "custom", "memory_bytes": 48 * 1024**3, "count": 2}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "llama-9"], "Presets: llama-3-8b, llama-3-70b"),
        (["--model", "llama-3-8b"], "--gpu is required"),
        (["--model", "llama-3-8b", "--gpu", "v100"], "--gpu 'v100' is not in the catalogue"),
        (["--model", "llama-3-8b", "--gpu", "l4", "--weights", "int3"], "--weights 'int3'"),
        (["--model", "llama-3-8b", "--gpu", "l4", "--kv-cache-memory", "1GiB"], "--gpu cpu"),
        (["--gpu", "cpu", "--tp", "2"], "--tp: GPU options"),
        (["--gpu", "cpu", "--kv-dtype", "fp8"], "--kv-dtype 'fp8'"),
        (["--gpu", "cpu", "--kv-cache-memory", "1MiB"], "would refuse to start"),
    ],
)
def test_memory_errors_exit_2_naming_the_option(args: list[str], message: str) -> None:
    result = runner.invoke(plan_app, ["memory", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_memory_cpu_takes_the_engine_settings(tmp_path: Path) -> None:
    engine = {"kv_cache_memory": "64MiB", "block_size": 32, "dtype": "float32",
              "max_model_len": 1024}  # fmt: skip
    path = config(tmp_path, {"engine": engine})
    result = runner.invoke(plan_app, ["memory", "--gpu", "cpu", "--config", path, "--json"])
    document = json.loads(result.output)
    assert document["num_blocks"] == 64 * 1024**2 // (32 * 46_080)
    assert document["max_model_len"] == 1024 and document["dtype"] == "fp32"
    assert "bundled model" in document["model"]["source"]


def test_memory_observed_kv_needs_the_concurrency() -> None:
    args = ["memory", "--model", "llama-3-70b", "--gpu", "a100-80gb", "--weights", "int4"]
    result = runner.invoke(plan_app, [*args, "--observed-kv", "18GB"])
    assert result.exit_code == 2 and "--observed-kv needs --concurrency" in result.output
    result = runner.invoke(plan_app, [*args, "--concurrency", "8", "--observed-kv", "18GB"])
    assert "Observed: 18.00 GB of KV for 8 requests" in result.output
