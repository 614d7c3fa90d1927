"""Model shapes: presets carry the published parameter counts; config.json is read as the
engine reads it; bad input names the option."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from strata.compute.models import PRESETS, count_params, load_model
from strata.engine.model_config import ModelConfig
from strata.errors import ConfigError

# Published sizes (model cards), in parameters.
PUBLISHED = {
    "llama-3-8b": 8.03e9,
    "llama-3-70b": 70.55e9,
    "mistral-7b": 7.25e9,
    "qwen2.5-7b": 7.62e9,
    "qwen2.5-72b": 72.7e9,
    "smollm2-135m": 134.5e6,
}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_parameter_counts_match_the_model_cards(name: str) -> None:
    total = load_model(name).params().total
    assert total == pytest.approx(PUBLISHED[name], rel=0.002)


def test_llama_3_8b_counts_by_hand() -> None:
    p = load_model("llama-3-8b").params()
    per_layer = 4096 * 4096 * 2 + 2 * 4096 * 1024 + 3 * 4096 * 14336
    assert p.linear == 32 * per_layer
    assert p.embedding == p.lm_head == 128256 * 4096  # untied
    assert p.total == 8_030_261_248


def test_tied_embeddings_have_no_separate_head() -> None:
    assert load_model("smollm2-135m").params().lm_head == 0


def test_qwen_counts_its_qkv_biases() -> None:
    config = load_model("qwen2.5-7b").config
    with_bias = count_params(config).other
    without = count_params(replace(config, attention_bias=False)).other
    assert with_bias - without == 28 * (28 + 2 * 4) * 128


def test_the_smollm2_preset_is_the_bundled_models_shape(smollm2_folder: Path) -> None:
    bundled = ModelConfig.from_folder(smollm2_folder)
    preset = load_model("smollm2-135m").config
    fields = (
        "vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads",
        "num_kv_heads", "head_dim", "max_position_embeddings", "tie_word_embeddings",
    )  # fmt: skip
    assert {f: getattr(preset, f) for f in fields} == {f: getattr(bundled, f) for f in fields}


def test_names_are_case_insensitive() -> None:
    assert load_model("Llama-3-70B").name == "Llama-3-70B"


def test_a_config_json_file_or_its_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(PRESETS["llama-3-8b"]))
    by_file = load_model(str(tmp_path / "config.json"))
    by_folder = load_model(str(tmp_path))
    assert by_file.config == by_folder.config == load_model("llama-3-8b").config
    assert by_folder.name == tmp_path.name


def test_unknown_model_lists_the_presets() -> None:
    with pytest.raises(ConfigError, match=r"--model 'llama-4'") as info:
        load_model("llama-4")
    assert all(name in info.value.message for name in PRESETS)


def test_broken_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{nope")
    with pytest.raises(ConfigError, match=r"not readable JSON"):
        load_model(str(tmp_path))


def test_unsupported_architecture_is_refused(tmp_path: Path) -> None:
    raw = {**PRESETS["llama-3-8b"], "architectures": ["GPT2LMHeadModel"]}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"--model: .*not supported"):
        load_model(str(tmp_path))
