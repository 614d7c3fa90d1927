"""`strata bench observability --quick` end to end with a tiny model: a real gateway and a real
twin engine server as child processes, a few requests each; the files it writes hold what
happened. No timing is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from strata.bench.observability.main import main


@pytest.mark.slow
def test_a_quick_run_writes_valid_json_and_markdown(
    tiny_llama_folder: Path, tmp_path: Path
) -> None:
    argv = ["--quick", "--model", str(tiny_llama_folder), "--threads", "1", "--out", str(tmp_path)]
    main(argv)
    data = json.loads((tmp_path / "observability.json").read_text())  # strict: no NaN
    assert data["command"] == "strata bench observability " + " ".join(argv)
    accuracy = data["accuracy"]
    assert accuracy["pairs"] == 6 and accuracy["unmatched"] == 0 and accuracy["failed"] == 0
    for pair in accuracy["requests"]:
        assert pair["request_id"].startswith("req-")
        assert pair["client_ms"] > 0 and pair["strata_ms"] > 0 and pair["engine_ms"] > 0
    overhead = data["overhead"]
    assert [r["arm"] for r in overhead["runs"]].count("off") == 2  # 2 rounds of 3 arms
    assert len(overhead["runs"]) == 6 and not any(r["failed"] for r in overhead["runs"])
    recorded = overhead["recorded_ttft_observations"]
    assert recorded["off"] == 0 and recorded["on"] == recorded["otel"] == 4 + 2 * 8
    assert overhead["otel_exports"]["/v1/traces"] >= 1
    assert set(overhead["comparisons"]) == {"on", "otel"}
    page = (tmp_path / "observability.md").read_text()
    assert "# Observability: accuracy and overhead" in page and "Only 2 rounds" in page


def test_bad_options_name_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, named in ((["--rounds", "0"], "--rounds"), (["--threads", "0"], "--threads"),
                        (["--prompt-len", "lots"], "--prompt-len")):  # fmt: skip
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--out", str(tmp_path)])
        assert exit_.value.code == 2 and named in capsys.readouterr().err
    assert not (tmp_path / "observability.json").exists()
