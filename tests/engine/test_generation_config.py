from __future__ import annotations

from pathlib import Path

import pytest

from strata.engine.generation_config import SamplingDefaults
from strata.errors import ModelLoadError


def test_explicit_values_win() -> None:
    d = SamplingDefaults.from_dict(
        {"do_sample": True, "temperature": 0.6, "top_p": 0.9, "top_k": 20}
    )
    assert d == SamplingDefaults(0.6, 0.9, 20)


def test_do_sample_false_means_greedy() -> None:
    assert SamplingDefaults.from_dict({"do_sample": False, "temperature": 0.7}).temperature == 0.0


def test_nothing_set_gives_openai_defaults(tmp_path: Path) -> None:
    assert SamplingDefaults.from_dict({"bos_token_id": 1}) == SamplingDefaults(1.0, 1.0, 0)
    assert SamplingDefaults.from_folder(tmp_path) == SamplingDefaults()


def test_corrupt_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "generation_config.json").write_text("{nope")
    with pytest.raises(ModelLoadError, match=r"generation_config\.json"):
        SamplingDefaults.from_folder(tmp_path)


def test_bundled_model_is_served_greedy_by_default(smollm2_folder: Path) -> None:
    assert SamplingDefaults.from_folder(smollm2_folder).temperature == 0.0
