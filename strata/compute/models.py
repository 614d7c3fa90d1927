"""Model shapes for planning: built-in presets and any Hugging Face `config.json`.

Both go through the engine's own parser (`ModelConfig.from_dict`), so a preset and a
config.json are read exactly as `strata engine serve` would read them, and the planner covers
the dense decoders the engine serves (Llama, Mistral, Qwen2 families).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.engine.model_config import ModelConfig
from strata.errors import ConfigError, ModelLoadError


def _llama(**fields: Any) -> dict[str, Any]:
    return {"architectures": ["LlamaForCausalLM"], "tie_word_embeddings": False, **fields}


# The architectural numbers of each model's published config.json (the base and instruct
# variants share them).
PRESETS: dict[str, dict[str, Any]] = {
    "llama-3-8b": _llama(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, vocab_size=128256,
        max_position_embeddings=8192, rope_theta=500000.0,
    ),
    "llama-3-70b": _llama(
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
        num_attention_heads=64, num_key_value_heads=8, head_dim=128, vocab_size=128256,
        max_position_embeddings=8192, rope_theta=500000.0,
    ),
    "mistral-7b": _llama(  # v0.3: 32768-token vocabulary, no sliding window
        architectures=["MistralForCausalLM"], hidden_size=4096, intermediate_size=14336,
        num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
        vocab_size=32768, max_position_embeddings=32768, rope_theta=1000000.0,
    ),
    "qwen2.5-7b": _llama(  # q/k/v carry biases (Qwen2ForCausalLM)
        architectures=["Qwen2ForCausalLM"], hidden_size=3584, intermediate_size=18944,
        num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, head_dim=128,
        vocab_size=152064, max_position_embeddings=32768, rope_theta=1000000.0,
    ),
    "qwen2.5-72b": _llama(
        architectures=["Qwen2ForCausalLM"], hidden_size=8192, intermediate_size=29568,
        num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8, head_dim=128,
        vocab_size=152064, max_position_embeddings=32768, rope_theta=1000000.0,
    ),
    "smollm2-135m": _llama(  # strata's bundled model (SmolLM2-135M-Instruct)
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, head_dim=64, vocab_size=49152, max_position_embeddings=8192,
        rope_theta=100000.0, tie_word_embeddings=True,
    ),
}  # fmt: skip
DISPLAY_NAMES = {
    "llama-3-8b": "Llama-3-8B",
    "llama-3-70b": "Llama-3-70B",
    "mistral-7b": "Mistral-7B-v0.3",
    "qwen2.5-7b": "Qwen2.5-7B",
    "qwen2.5-72b": "Qwen2.5-72B",
    "smollm2-135m": "SmolLM2-135M",
}
BUNDLED_PRESET = "smollm2-135m"


@dataclass(frozen=True)
class ParamCounts:
    """Parameters by how they are stored: `linear` are the decoder layers' matrices (what
    weight quantization applies to); the rest stay 16-bit."""

    linear: int
    embedding: int
    lm_head: int  # 0 when tied to the embedding
    other: int  # norms and biases

    @property
    def total(self) -> int:
        return self.linear + self.embedding + self.lm_head + self.other

    @property
    def unquantized(self) -> int:
        return self.embedding + self.lm_head + self.other


@dataclass(frozen=True)
class ModelSpec:
    """A model to plan for: its name, where it came from, and its shape."""

    name: str
    source: str
    config: ModelConfig

    def params(self) -> ParamCounts:
        return count_params(self.config)


def layer_linear_params(c: ModelConfig) -> int:
    """Matrix weights of one decoder layer: q, k, v, o projections and the gated MLP."""
    q = c.hidden_size * c.num_heads * c.head_dim
    kv = 2 * c.hidden_size * c.num_kv_heads * c.head_dim
    o = c.num_heads * c.head_dim * c.hidden_size
    mlp = 3 * c.hidden_size * c.intermediate_size
    return q + kv + o + mlp


def count_params(c: ModelConfig) -> ParamCounts:
    embedding = c.vocab_size * c.hidden_size
    bias = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim if c.attention_bias else 0
    norms = 2 * c.hidden_size
    return ParamCounts(
        linear=c.num_layers * layer_linear_params(c),
        embedding=embedding,
        lm_head=0 if c.tie_word_embeddings else embedding,
        other=c.num_layers * (norms + bias) + c.hidden_size,
    )


def load_model(spec: str) -> ModelSpec:
    """`spec` is a preset name, a config.json file, or a folder holding one (`--model`)."""
    key = spec.strip().lower()
    if key in PRESETS:
        return ModelSpec(DISPLAY_NAMES[key], f"preset {key}", _parse(PRESETS[key], key))
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return ModelSpec(_folder_name(path), str(path), _parse(_read_json(path), str(path)))
    raise ConfigError(
        f"--model {spec!r}: no such preset, file or folder. Presets: {', '.join(PRESETS)}; "
        "or pass a Hugging Face config.json (or the folder holding it)."
    )


def _parse(raw: dict[str, Any], source: str) -> ModelConfig:
    try:
        return ModelConfig.from_dict(raw, source)
    except ModelLoadError as exc:
        raise ConfigError(f"--model: {exc.message}") from exc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--model {path}: not readable JSON ({exc}).") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"--model {path}: expected a JSON object (a config.json).")
    return raw


def _folder_name(config_path: Path) -> str:
    return config_path.resolve().parent.name or str(config_path)
