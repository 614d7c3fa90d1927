"""The `strata` CLI: help texts, config errors as one message with exit code 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from strata import __version__
from strata.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [key for key in os.environ if key.startswith("STRATA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STRATA_CONFIG", "")  # recorded, so the teardown removes it again
    monkeypatch.chdir(tmp_path)


def test_help_lists_the_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "engine", "config"):
        assert command in result.output


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "Usage" in result.output


def test_engine_serve_help_describes_its_options() -> None:
    result = runner.invoke(app, ["engine", "serve", "--help"])
    assert result.exit_code == 0
    for option in ("--config", "--model", "--served-model-name", "--host", "--port"):
        assert option in result.output
    assert "bearer token" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_config_show_prints_effective_yaml_with_secrets_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("engine:\n  max_num_seqs: 8\n", encoding="utf-8")
    monkeypatch.setenv("STRATA_ENGINE_SERVER__TOKEN", "s3cret-token")
    result = runner.invoke(app, ["config", "show", "--config", str(config)])
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["engine"]["max_num_seqs"] == 8
    assert shown["engine_server"]["token"] == "**********"
    assert "s3cret" not in result.output


@pytest.mark.parametrize("command", [["config", "show"], ["engine", "serve"], ["serve"]])
def test_bad_config_exits_2_with_one_message_and_no_traceback(
    tmp_path: Path, command: list[str]
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("engine:\n  max_num_seqs: 0\n  colour: blue\n", encoding="utf-8")
    result = runner.invoke(app, [*command, "--config", str(config)])
    assert result.exit_code == 2
    assert "engine.max_num_seqs" in result.stderr
    assert "engine.colour: remove it (unknown key)" in result.stderr
    assert "Traceback" not in result.output


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "show", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_bad_option_value_is_rejected_by_the_cli() -> None:
    result = runner.invoke(app, ["engine", "serve", "--port", "0"])
    assert result.exit_code == 2


def test_a_model_that_cannot_be_loaded_exits_1(tmp_path: Path) -> None:
    result = runner.invoke(app, ["engine", "serve", "--model", str(tmp_path / "no-model")])
    assert result.exit_code == 1, result.output
    assert "no-model" in result.stderr
    assert "Traceback" not in result.output
