"""Reading and writing step-time profiles: every bad file names the field and the way out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from strata.compute.profile import EngineProfile, EngineSizes, read_profile
from strata.compute.step_time import StepShape, StepTimeModel
from strata.errors import ConfigError


def sample_profile() -> EngineProfile:
    sizes = EngineSizes(
        block_size=16,
        num_blocks=1000,
        max_model_len=2048,
        max_num_seqs=8,
        max_num_batched_tokens=256,
        max_waiting=64,
        dtype="float32",
        threads=2,
    )
    steps = [
        (StepShape(1, 1, 16, 0), 0.01),
        (StepShape(8, 8, 128, 0), 0.02),
        (StepShape(100, 1, 0, 10_000), 0.05),
    ]
    model = StepTimeModel({"base": 0.009, "tokens": 0.0004}, (0.9, 1.0, 1.1))
    return EngineProfile(sizes, model, steps, {"date": "2025-01-01 10:00"})


def test_a_written_profile_reads_back_equal(tmp_path: Path) -> None:
    profile = sample_profile()
    profile.write(tmp_path / "deep" / "profile.json")
    assert read_profile(tmp_path / "deep" / "profile.json") == profile
    assert profile.max_profiled_batch == 8


def write(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(document))
    return path


def edited(**changes: Any) -> dict[str, Any]:
    document = sample_profile().to_json()
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = document
        for parent in parents:
            target = target[parent]
        target[key] = value
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"hello": 1}, "not a step-time profile"),
        (edited(version=7), "version: 7"),
        (edited(engine=None), "engine: missing"),
        (edited(engine__block_size="16"), "engine.block_size: must be a non-negative integer"),
        (edited(engine__num_blocks=0), "engine.block_size and engine.num_blocks"),
        (edited(step_time__coefficients={"tokens": 1e-3}), "step_time.coefficients.base"),
        (edited(steps=[[1, 2, 3]]), r"steps\[0\]"),
    ],
)
def test_a_bad_profile_names_the_field(
    tmp_path: Path, document: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        read_profile(write(tmp_path, document))
    assert caught.value.message.startswith("--profile ")
    assert "strata bench engine --profile" in caught.value.message


def test_a_missing_or_unreadable_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file; make one with `strata bench engine"):
        read_profile(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        read_profile(tmp_path / "bad.json")
