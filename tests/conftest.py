"""Shared model fixtures: the real bundled SmolLM2 (converted once, cached across runs) and tiny
random-weight Llama/Qwen2 models and tokenizers built in seconds."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from strata.engine.loader import resolve_model_folder

# Real services, started by the fixtures in these modules on free ports / temp dirs.
pytest_plugins = [
    "tests.support.postgres",
    "tests.support.redis_server",
    "tests.support.primary_postgres",
]

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json")


def persistent_cache_dir() -> Path:
    """Where converted models persist between test runs (`STRATA_TEST_CACHE`)."""
    return Path(os.environ.get("STRATA_TEST_CACHE", REPO / ".strata" / "test-cache"))


@pytest.fixture(scope="session")
def smollm2_folder() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF converted to a float32 HF folder."""
    return resolve_model_folder(None, persistent_cache_dir())


def copy_tokenizer_files(source: Path, target: Path) -> None:
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, target / name)


def _tiny_config_fields(vocab_size: int) -> dict[str, Any]:
    return {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


@pytest.fixture(scope="session")
def tiny_llama_folder(smollm2_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random LlamaForCausalLM (untied embeddings) with SmolLM2's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(**_tiny_config_fields(49152), tie_word_embeddings=False)
    LlamaForCausalLM(config).save_pretrained(folder)  # float32: the default dtype
    copy_tokenizer_files(smollm2_folder, folder)
    return folder


@pytest.fixture(scope="session")
def tiny_qwen2_folder(smollm2_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Qwen2ForCausalLM (q/k/v biases, tied embeddings), SmolLM2 tokenizer."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = tmp_path_factory.mktemp("tiny-qwen2")
    torch.manual_seed(0)
    config = Qwen2Config(**_tiny_config_fields(49152), tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    copy_tokenizer_files(smollm2_folder, folder)
    return folder


@pytest.fixture(scope="session")
def tiny_sp_tokenizer_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small SentencePiece-style (Metaspace, byte-fallback, adds <s>) Llama tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    folder = tmp_path_factory.mktemp("tiny-sp-tokenizer")
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)
    trainer = trainers.BpeTrainer(
        vocab_size=200,
        special_tokens=["<unk>", "<s>", "</s>"],
        limit_alphabet=60,
        show_progress=False,
    )
    tok.train_from_iterator(_SP_CORPUS * 20, trainer)
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    first_byte_id = len(vocab)
    for byte in range(256):  # byte-fallback needs the <0x..> tokens in the model vocabulary
        vocab[f"<0x{byte:02X}>"] = first_byte_id + byte
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(_SP_TOKENIZER_CONFIG), encoding="utf-8"
    )
    return folder


_SP_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! How are you today?",
    "Paris is the capital of France.",
    "  leading spaces and\nnew lines\tand tabs",
]

_SP_TOKENIZER_CONFIG = {
    "tokenizer_class": "LlamaTokenizer",
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "add_bos_token": True,
    "add_eos_token": False,
    "legacy": False,
    "clean_up_tokenization_spaces": False,
}


def template_folder(source: Path, target: Path, template: str) -> Path:
    """A tokenizer folder copied from `source` whose chat template is `template`."""
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, target / name)
    (target / "chat_template.jinja").write_text(template, encoding="utf-8")
    return target


def hf_tokenizer(folder: Path) -> Any:
    """transformers' AutoTokenizer for `folder`: the reference strata's tokenizer must match."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)
