from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from strata.bench.gateway.main import main, parser, systems_arg


def test_systems_arg() -> None:
    assert systems_arg("direct, litellm") == ("direct", "litellm")
    with pytest.raises(argparse.ArgumentTypeError, match="direct, litellm, strata"):
        systems_arg("direct,vllm")
    with pytest.raises(argparse.ArgumentTypeError):
        systems_arg(",")


def test_defaults() -> None:
    args = parser().parse_args([])
    assert args.systems == ("direct", "litellm", "strata", "strata-guard")
    assert args.concurrency == [1, 8, 32]
    assert (args.duration_s, args.chunks, args.out) == (10.0, 20, Path("docs/benchmarks"))


def test_missing_tools_exit_with_the_install_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to find
    with pytest.raises(SystemExit) as exit_:
        main(["--systems", "direct", "--out", str(tmp_path)])
    assert exit_.value.code == 1
    assert "sudo apt-get install -y nginx util-linux wrk" in capsys.readouterr().err
    assert not (tmp_path / "gateway.json").exists()
