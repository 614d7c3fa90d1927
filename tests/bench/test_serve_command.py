"""`strata bench serve` end to end against the real engine server, and its option errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strata.cli import app
from tests.support.live_server import TOKEN, LiveServer

runner = CliRunner()
SMALL = ["--prompt-len", "12", "--output-len", "4", "--no-progress"]


@pytest.fixture(autouse=True)
def no_key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRATA_BENCH_API_KEY", raising=False)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "engine.token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    return path


def bench(server: LiveServer, *args: str) -> list[str]:
    return ["bench", "serve", "--url", f"{server.url}/v1", *args]


def test_bench_is_a_command_group_with_serve() -> None:
    assert "bench" in runner.invoke(app, ["--help"]).output
    result = runner.invoke(app, ["bench", "--help"])
    assert result.exit_code == 0 and "serve" in result.output
    result = runner.invoke(app, ["bench", "serve", "--help"])
    for option in ("--url", "--api-key-file", "--concurrency", "--rate", "--poisson", "--sweep"):
        assert option in result.output


def test_a_concurrency_run_writes_json_and_markdown_with_the_command(
    bench_server: LiveServer, key_file: Path, tmp_path: Path
) -> None:
    args = bench(bench_server, "--api-key-file", str(key_file), "--concurrency", "2",
                 "--requests", "4", *SMALL, "--name", "c2", "--out", str(tmp_path))  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "serve-c2.json").read_text(encoding="utf-8"))
    command = document["command"]
    assert command.startswith("strata bench serve --url http://127.0.0.1:")
    assert f"--api-key-file {key_file}" in command and "--concurrency 2" in command
    assert "--requests 4 --prompt-len 12 --output-len 4 --name c2" in command  # declared order
    assert command.endswith(f"--out {tmp_path} --no-progress")
    assert document["summary"]["succeeded"] == 4 and document["summary"]["output_tokens"] == 16
    markdown = (tmp_path / "serve-c2.md").read_text(encoding="utf-8")
    assert command in markdown and "| TTFT |" in markdown
    assert markdown in result.stdout  # the table is printed too
    assert "serve-c2.json" in result.stderr


def test_the_key_never_reaches_the_report(bench_server: LiveServer, tmp_path: Path) -> None:
    args = bench(bench_server, "--api-key", TOKEN, "--rate", "20", "--poisson",
                 "--requests", "3", *SMALL, "--out", str(tmp_path))  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    text = (tmp_path / "serve-poisson-20.json").read_text(encoding="utf-8")
    assert TOKEN not in text and "--api-key '***' --rate 20 --poisson" in text


def test_the_key_from_the_environment(
    bench_server: LiveServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATA_BENCH_API_KEY", TOKEN)
    args = bench(bench_server, "--concurrency", "1", "--requests", "1", *SMALL,
                 "--endpoint", "completions", "--out", str(tmp_path))  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "serve-concurrency-1.json").read_text(encoding="utf-8"))
    assert (
        "--api-key" not in document["command"] and document["config"]["endpoint"] == "completions"
    )


def test_a_sweep_prints_the_answer_and_the_probes(
    bench_server: LiveServer, key_file: Path, tmp_path: Path
) -> None:
    args = bench(bench_server, "--api-key-file", str(key_file), "--sweep", "--rate", "8",
                 "--sweep-max-rate", "16", "--requests", "3", "--slo-ttft-ms", "30000", *SMALL,
                 "--out", str(tmp_path))  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Highest rate holding the SLO: 16 req/s" in result.stdout
    document = json.loads((tmp_path / "serve-sweep.json").read_text(encoding="utf-8"))
    assert [p["rate"] for p in document["probes"]] == [8, 16] and document["best_rate"] == 16
    assert document["config"]["budget"] == {"requests": 3, "duration_s": 60.0}


def test_a_wrong_key_exits_1_with_the_401_reported(
    bench_server: LiveServer, tmp_path: Path
) -> None:
    args = bench(bench_server, "--api-key", "wrong", "--model", "tiny", "--concurrency", "2",
                 "--requests", "2", *SMALL, "--out", str(tmp_path))  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "no request succeeded" in result.stderr
    assert "| 401 | 2 |" in (tmp_path / "serve-concurrency-2.md").read_text(encoding="utf-8")
    result = runner.invoke(app, bench(bench_server, "--api-key", "wrong", "--concurrency", "1"))
    assert result.exit_code == 1 and "/models: 401" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of"),
        (["--concurrency", "2", "--rate", "3"], "exactly one of"),
        (["--concurrency", "2", "--poisson"], "--poisson"),
        (["--sweep"], "needs an SLO"),
        (["--sweep", "--concurrency", "2", "--slo-ttft-ms", "100"], "--concurrency"),
        (["--rate", "0"], "--rate"),
        (["--rate", "1", "--duration", "-1"], "--duration"),
        (["--concurrency", "1", "--prompt-len", "uniform:9"], "--prompt-len"),
        (["--concurrency", "1", "--output-len", "0"], "length"),
        (["--concurrency", "1", "--slo-itl-ms", "0"], "SLO"),
        (["--concurrency", "1", "--api-key-file", "/no/such/file"], "--api-key-file"),
    ],
)
def test_bad_options_exit_2_before_sending_anything(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["bench", "serve", "--url", "http://127.0.0.1:9/v1", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
