"""Planning for strata's own engine on CPU (`strata plan memory --gpu cpu`).

The engine sizes its KV cache from an explicit byte budget (`engine.kv_cache_memory`), not
from a share of device memory, so there is no reserve to estimate: the prediction is the
block count itself. It is computed by the very functions `strata.engine.builder.build_core`
calls (`resolve_dtype`, `resolve_max_model_len`, `blocks_for_memory`), so the plan and the
engine cannot drift apart; tests also build real engines and compare.
"""

from __future__ import annotations

from dataclasses import dataclass

from strata.compute.memory import ConcurrencyCheck, KvMemory, WeightMemory, kv_memory
from strata.compute.memory import weight_memory as weight_memory_of
from strata.compute.models import ModelSpec
from strata.compute.precision import dtype_name, weight_precision
from strata.errors import ConfigError

ENGINE_DTYPES = ("auto", "float32", "bfloat16", "float16")
_SHORT = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def engine_dtype(name: str) -> str:
    """`--kv-dtype` as an `engine.dtype` value ('fp32' -> 'float32'); ConfigError for a
    dtype the engine cannot run (its KV cache is always at the model's dtype)."""
    key = dtype_name(name)
    key = _SHORT.get(key, key)
    if key not in ENGINE_DTYPES:
        raise ConfigError(
            f"--kv-dtype {name!r}: strata's engine keeps its KV cache at engine.dtype, "
            f"one of {', '.join(ENGINE_DTYPES)}."
        )
    return key


@dataclass(frozen=True)
class EngineInputs:
    """The engine settings that size its KV cache (`engine.*`), and the load to check."""

    model: ModelSpec
    dtype: str  # engine.dtype: auto, float32, bfloat16, float16
    kv_cache_memory: int  # engine.kv_cache_memory, bytes
    block_size: int  # engine.block_size
    max_model_len: int | None = None  # engine.max_model_len; None: the model's limit
    max_num_seqs: int = 32  # engine.max_num_seqs: the batch cap
    context: int | None = None  # tokens per request; None: max_model_len
    concurrency: int | None = None


@dataclass(frozen=True)
class EnginePlan:
    """What strata's engine allocates for `inputs`: `num_blocks` is its block count."""

    inputs: EngineInputs
    dtype: str  # resolved, e.g. fp32
    max_model_len: int
    context: int
    kv: KvMemory
    weights: WeightMemory  # host memory at the engine dtype, outside kv_cache_memory
    num_blocks: int

    @property
    def pool_bytes(self) -> int:
        """Bytes of the K and V tensors the engine allocates."""
        return self.num_blocks * self.kv.block_bytes

    @property
    def max_concurrency(self) -> int:
        """Requests at full context whose KV fits at once (the batch cap applies too)."""
        return self.num_blocks // self.kv.blocks_per_request

    def check(self, requested: int) -> ConcurrencyCheck:
        per_request = self.kv.blocks_per_request
        return ConcurrencyCheck(
            requested, requested * per_request, self.num_blocks, self.kv.block_bytes, per_request
        )


def plan_engine(inputs: EngineInputs) -> EnginePlan:
    """Size the engine's KV cache exactly as the engine does; ConfigError when the engine
    would refuse these settings."""
    _check(inputs)
    import torch  # only this mode needs it: the engine resolves dtypes with torch

    from strata.engine.core import blocks_for_memory, resolve_dtype, resolve_max_model_len

    config = inputs.model.config
    try:
        dtype = resolve_dtype(engine_dtype(inputs.dtype), torch.device("cpu"))
        max_len = resolve_max_model_len(inputs.max_model_len, config)
        num_blocks = blocks_for_memory(
            inputs.kv_cache_memory, inputs.block_size, config, dtype, max_len
        )
    except ConfigError as exc:
        raise ConfigError(
            f"strata's engine would refuse to start: {exc.message} "
            "(here: --kv-cache-memory, --max-model-len)"
        ) from exc
    name = dtype_name(str(dtype).removeprefix("torch."))
    context = _context(inputs.context, max_len)
    kv = kv_memory(config, name, 1, inputs.block_size, context)
    weights = weight_memory_of(inputs.model, weight_precision(name), 1)
    return EnginePlan(inputs, name, max_len, context, kv, weights, num_blocks)


def _context(context: int | None, max_len: int) -> int:
    if context is None:
        return max_len
    if not 1 <= context <= max_len:
        raise ConfigError(
            f"--context {context}: the engine accepts 1 to {max_len} tokens per request "
            "(engine.max_model_len; raise it with --max-model-len)."
        )
    return context


def _check(inputs: EngineInputs) -> None:
    engine_dtype(inputs.dtype)
    if inputs.block_size < 1:
        raise ConfigError(f"--block-size must be at least 1 (got {inputs.block_size}).")
    if inputs.concurrency is not None and inputs.concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1 (got {inputs.concurrency}).")
