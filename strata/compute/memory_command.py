"""`strata plan memory`: GPU plans, and `--gpu cpu` for strata's own engine (its defaults come
from the `engine` settings; torch is imported only in that mode)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from strata.cli_options import EXIT_BAD_INPUT, ConfigOption, JsonOption, settings_from
from strata.compute.cli_common import (
    emit,
    fail,
)
from strata.compute.engine_plan import EngineInputs, engine_dtype, plan_engine
from strata.compute.gpus import find_gpu
from strata.compute.memory import MemoryInputs, RuntimeAssumptions, plan_memory
from strata.compute.memory_report import engine_json, engine_lines, memory_json, memory_lines
from strata.compute.models import BUNDLED_PRESET, ModelSpec, load_model
from strata.compute.precision import (
    DEFAULT_GROUP_SIZE,
    dtype_name,
    kv_dtype_bytes,
    weight_precision,
)
from strata.compute.units import parse_size
from strata.config import Settings
from strata.errors import ConfigError

ENGINE_TARGET = "cpu"


@dataclass(frozen=True)
class GpuOnly:
    """Options that describe a GPU deployment; None when not given."""

    gpu_memory: str | None
    weights: str | None
    tp: int | None
    utilization: float | None
    runtime_overhead: str | None
    max_batched_tokens: int | None
    fragmentation: float | None
    observed_kv: str | None


def memory(
    model: Annotated[str | None, typer.Option(
        help="A preset (llama-3-8b, llama-3-70b, mistral-7b, qwen2.5-7b, qwen2.5-72b, "
        "smollm2-135m) or a Hugging Face config.json / model folder. With --gpu cpu: default "
        "engine.model (the bundled SmolLM2).")] = None,
    gpu: Annotated[str | None, typer.Option(
        help="l4, a10g, a100-40gb, a100-80gb, h100-80gb, h200; 'cpu' plans for strata's own "
        "engine (engine.kv_cache_memory); for another card use --gpu-memory.")] = None,
    gpu_memory: Annotated[str | None, typer.Option(
        help="A custom GPU's memory, e.g. 48GiB (as the driver reports it).")] = None,
    weights: Annotated[str | None, typer.Option(
        help="Weight precision: fp32, fp16, bf16, fp8, int8, int4. [default: fp16]")] = None,
    group_size: Annotated[int, typer.Option(
        help="Weights per quantization group (int8/int4): one fp16 scale + zero point each."
    )] = DEFAULT_GROUP_SIZE,
    kv_dtype: Annotated[str, typer.Option(
        help="KV-cache dtype: fp32, fp16, bf16, fp8; auto: the weights' 16-bit type (GPU) or "
        "engine.dtype (--gpu cpu).")] = "auto",
    tp: Annotated[int | None, typer.Option(
        help="Tensor parallelism: GPUs the model is split over. [default: 1]")] = None,
    context: Annotated[int | None, typer.Option(
        help="Tokens per request (prompt + output). [default: the model's limit]")] = None,
    concurrency: Annotated[int | None, typer.Option(
        help="Concurrent requests to check: fits or not, and by how much.")] = None,
    gpu_memory_utilization: Annotated[float | None, typer.Option(
        help="Share of GPU memory the engine may use. [default: 0.9]")] = None,
    block_size: Annotated[int | None, typer.Option(
        help="Tokens per KV block. [default: 16; --gpu cpu: engine.block_size]")] = None,
    runtime_overhead: Annotated[str | None, typer.Option(
        help="CUDA context, workspaces and CUDA graphs per GPU. [default: 1.5GiB]")] = None,
    max_batched_tokens: Annotated[int | None, typer.Option(
        help="Tokens per forward pass: sizes the activations. [default: 8192]")] = None,
    max_num_seqs: Annotated[int | None, typer.Option(
        help="Sequences per step: sizes the logits (GPU); the batch cap (--gpu cpu). "
        "[default: 256; --gpu cpu: engine.max_num_seqs]")] = None,
    fragmentation: Annotated[float | None, typer.Option(
        help="Share of the memory left for the KV cache lost to fragmentation. [default: 0.05]"
    )] = None,
    kv_cache_memory: Annotated[str | None, typer.Option(
        help="--gpu cpu: the engine's KV budget, e.g. 512MiB. [default: engine.kv_cache_memory]"
    )] = None,
    max_model_len: Annotated[int | None, typer.Option(
        help="--gpu cpu: longest request. [default: engine.max_model_len or the model's]")] = None,
    observed_kv: Annotated[str | None, typer.Option(
        help="KV-cache size at which you saw --concurrency requests spill, e.g. 18GB: "
        "--explain says what that implies about everything else on the GPU.")] = None,
    as_json: JsonOption = False,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Show the arithmetic, the assumptions and what it would take to "
        "flip the verdict.")] = False,
    config: ConfigOption = None,
) -> None:  # fmt: skip
    """How much GPU memory a model needs: weights, KV cache per token and per request, the
    runtime reserve, and the most concurrent requests before the KV cache spills."""
    gpu_only = GpuOnly(gpu_memory, weights, tp, gpu_memory_utilization, runtime_overhead,
                       max_batched_tokens, fragmentation, observed_kv)  # fmt: skip
    try:
        if gpu is not None and gpu.strip().lower() == ENGINE_TARGET:
            _reject_gpu_only(gpu_only)
            engine = _engine_inputs(
                settings_from(config), model, kv_dtype, kv_cache_memory, block_size,
                max_model_len, max_num_seqs, context, concurrency,
            )  # fmt: skip
            engine_plan = plan_engine(engine)
            emit(engine_json(engine_plan, explain), engine_lines(engine_plan, explain), as_json)
            return
        _reject_engine_only(kv_cache_memory, max_model_len)
        inputs = _gpu_inputs(model, gpu, gpu_only, group_size, kv_dtype, context, concurrency,
                             block_size, max_num_seqs)  # fmt: skip
        plan = plan_memory(inputs)
        seen = _observed(observed_kv, concurrency)
    except ConfigError as exc:
        fail(exc.message, EXIT_BAD_INPUT)
    emit(memory_json(plan, explain, seen), memory_lines(plan, explain, seen), as_json)


def _observed(observed_kv: str | None, concurrency: int | None) -> int | None:
    if observed_kv is None:
        return None
    if concurrency is None:
        raise ConfigError("--observed-kv needs --concurrency: how many requests held that KV.")
    return parse_size(observed_kv, "--observed-kv")


def _gpu_inputs(
    model: str | None, gpu: str | None, o: GpuOnly, group_size: int, kv_dtype: str,
    context: int | None, concurrency: int | None, block_size: int | None,
    max_num_seqs: int | None,
) -> MemoryInputs:  # fmt: skip
    if model is None:
        raise ConfigError("--model is required: a preset such as llama-3-70b, or a config.json.")
    spec = load_model(model)
    if gpu is None and o.gpu_memory is None:
        raise ConfigError("--gpu is required: e.g. --gpu a100-80gb, --gpu cpu, or --gpu-memory.")
    precision = weight_precision(o.weights or "fp16", group_size)
    memory = parse_size(o.gpu_memory, "--gpu-memory") if o.gpu_memory else None
    defaults = RuntimeAssumptions()
    runtime = RuntimeAssumptions(
        _size_or(o.runtime_overhead, "--runtime-overhead", defaults.overhead_bytes),
        o.max_batched_tokens or defaults.max_batched_tokens,
        max_num_seqs or defaults.max_num_seqs,
        defaults.fragmentation if o.fragmentation is None else o.fragmentation,
    )
    return MemoryInputs(
        spec, precision, _gpu_kv_dtype(kv_dtype, precision.name), find_gpu(gpu, memory),
        context or spec.config.max_position_embeddings, o.tp or 1,
        0.9 if o.utilization is None else o.utilization, block_size or 16, concurrency, runtime,
    )  # fmt: skip


def _gpu_kv_dtype(name: str, weights: str) -> str:
    """`auto` is the model's 16-bit dtype (fp32 for fp32 weights), as in vLLM."""
    if name.strip().lower() != "auto":
        kv_dtype_bytes(name)  # raises naming the option
        return dtype_name(name)
    return weights if weights in ("fp32", "bf16") else "fp16"


def _size_or(text: str | None, option: str, default: int) -> int:
    if text is None:
        return default
    if text.strip() in ("0", "0B"):
        return 0
    return parse_size(text, option)


def _engine_inputs(
    settings: Settings, model: str | None, kv_dtype: str, kv_cache_memory: str | None,
    block_size: int | None, max_model_len: int | None, max_num_seqs: int | None,
    context: int | None, concurrency: int | None,
) -> EngineInputs:  # fmt: skip
    engine = settings.engine
    dtype = engine.dtype if kv_dtype.strip().lower() == "auto" else engine_dtype(kv_dtype)
    memory = engine.kv_cache_memory
    return EngineInputs(
        _engine_model(model or engine.model), dtype,
        parse_size(kv_cache_memory, "--kv-cache-memory") if kv_cache_memory else int(memory),
        block_size or engine.block_size, max_model_len or engine.max_model_len,
        max_num_seqs or engine.max_num_seqs, context, concurrency,
    )  # fmt: skip


def _engine_model(spec: str | None) -> ModelSpec:
    if not spec:
        bundled = load_model(BUNDLED_PRESET)
        return ModelSpec(bundled.name, f"{bundled.source}, the bundled model", bundled.config)
    if spec.lower().endswith(".gguf"):
        raise ConfigError(
            f"--model {spec}: a .gguf file; pass the Hugging Face folder strata converted it to "
            "(under <data_dir>/models) or a preset."
        )
    return load_model(spec)


def _reject_gpu_only(o: GpuOnly) -> None:
    given = [name for name, value in o.__dict__.items() if value is not None]
    if o.tp == 1:
        given.remove("tp")
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ConfigError(
            f"{flags}: GPU options; --gpu cpu plans strata's engine, which keeps weights and KV "
            "cache at engine.dtype (--kv-dtype) in an explicit --kv-cache-memory."
        )


def _reject_engine_only(kv_cache_memory: str | None, max_model_len: int | None) -> None:
    if kv_cache_memory is not None or max_model_len is not None:
        raise ConfigError(
            "--kv-cache-memory and --max-model-len size strata's engine: use them with "
            "--gpu cpu. On a GPU the KV cache is what the budget leaves (--context sets the "
            "request length)."
        )
