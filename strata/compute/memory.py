"""The GPU memory planner: weights + runtime reserve + paged KV cache on each GPU.

A serving engine (vLLM's model, which strata's engine follows) takes `utilization` of each
GPU's memory as its budget, loads its shard of the weights, keeps room for the runtime and the
activations of one full step, and turns what is left into KV-cache blocks of `block_size`
tokens. A request holds ceil(context / block_size) blocks at full length; when the running
requests need more blocks than exist, the engine preempts one (recompute, or in vLLM V0 swap
its blocks to CPU memory): that is the "spill" this module predicts.

`plan_memory` validates the inputs; `compute_plan` is the bare arithmetic, which the
explanation re-runs with one assumption changed at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from strata.compute.gpus import Gpu
from strata.compute.models import ModelSpec, ParamCounts
from strata.compute.precision import KV_DTYPE_BYTES, WeightPrecision
from strata.compute.units import GiB
from strata.engine.model_config import ModelConfig
from strata.errors import ConfigError

DEFAULT_UTILIZATION = 0.9  # vLLM's --gpu-memory-utilization default
DEFAULT_BLOCK_SIZE = 16  # vLLM's and strata's default tokens per KV block
LOGITS_BYTES = 4 * 2  # fp32 logits plus the sampler's fp32 probabilities, per vocab entry


@dataclass(frozen=True)
class RuntimeAssumptions:
    """What besides weights and KV the engine keeps on each GPU; every number is an
    assumption the output states and an option overrides."""

    # CUDA context, cuBLAS/NCCL workspaces and captured CUDA graphs: vLLM logs its measured
    # "non-torch memory" and graph memory at start-up; put them here (--runtime-overhead).
    overhead_bytes: int = int(1.5 * GiB)
    # Tokens in one forward pass (prefill chunk budget): sizes the activation peak.
    max_batched_tokens: int = 8192
    # Sequences sampled in one step: sizes the logits.
    max_num_seqs: int = 256
    # Share of the memory left after weights, overhead and activations that the allocator and
    # the cache layout waste. A paged cache wastes < 1 block per request (counted separately,
    # by rounding each request up to whole blocks); PyTorch's caching allocator keeps a few
    # percent more reserved than allocated. A contiguous cache that reserves the full context
    # per request wastes 60-80% (Kwon et al., vLLM paper, 2023).
    fragmentation: float = 0.05


@dataclass(frozen=True)
class MemoryInputs:
    """One planning question: this model, at this precision, on `tp` of these GPUs."""

    model: ModelSpec
    weights: WeightPrecision
    kv_dtype: str  # a key of KV_DTYPE_BYTES
    gpu: Gpu
    context: int  # tokens per request (prompt + output) at full length
    tp: int = 1
    utilization: float = DEFAULT_UTILIZATION
    block_size: int = DEFAULT_BLOCK_SIZE
    concurrency: int | None = None
    runtime: RuntimeAssumptions = field(default_factory=RuntimeAssumptions)


@dataclass(frozen=True)
class WeightMemory:
    precision: WeightPrecision
    params: ParamCounts
    quantized_bytes: int  # the decoder layers' matrices at `precision`
    unquantized_bytes: int  # embeddings, LM head, norms, biases at 16 (or 32) bits
    per_gpu_bytes: int  # matrices and embeddings split `tp` ways; norms replicated

    @property
    def total_bytes(self) -> int:
        return self.quantized_bytes + self.unquantized_bytes


@dataclass(frozen=True)
class KvMemory:
    """KV-cache sizes; `*_per_gpu` values are one tensor-parallel shard."""

    dtype: str
    dtype_bytes: int
    bytes_per_token: int  # all layers, all KV heads: the whole model
    bytes_per_token_per_gpu: int
    kv_heads_per_gpu: int
    block_size: int
    blocks_per_request: int  # at the planned context

    @property
    def block_bytes(self) -> int:
        """One block on one GPU."""
        return self.block_size * self.bytes_per_token_per_gpu

    @property
    def bytes_per_request(self) -> int:
        return self.blocks_per_request * self.block_size * self.bytes_per_token

    @property
    def bytes_per_request_per_gpu(self) -> int:
        return self.blocks_per_request * self.block_bytes


@dataclass(frozen=True)
class Reserve:
    """Per-GPU memory that is neither weights nor KV cache."""

    overhead: int
    activations: int
    logits: int
    fragmentation: int

    @property
    def total(self) -> int:
        return self.overhead + self.activations + self.logits + self.fragmentation


@dataclass(frozen=True)
class ConcurrencyCheck:
    """Whether `requested` requests at full context fit in the KV cache."""

    requested: int
    blocks_needed: int
    blocks_available: int
    block_bytes: int
    blocks_per_request: int

    @property
    def fits(self) -> bool:
        return self.blocks_needed <= self.blocks_available

    @property
    def spare_blocks(self) -> int:
        """Blocks left over (negative: blocks missing)."""
        return self.blocks_available - self.blocks_needed

    @property
    def spare_bytes(self) -> int:
        return self.spare_blocks * self.block_bytes


@dataclass(frozen=True)
class MemoryPlan:
    """The answer: per-GPU budget split into weights, reserve and KV blocks."""

    inputs: MemoryInputs
    budget: int  # per GPU: memory x utilization
    weights: WeightMemory
    kv: KvMemory
    reserve: Reserve
    kv_pool: int  # per GPU bytes for KV blocks (0 when nothing is left)
    shortfall: int  # per GPU bytes by which weights + reserve exceed the budget (else 0)
    num_blocks: int

    @property
    def max_concurrency(self) -> int:
        """Requests at full context that fit before the KV cache spills."""
        return self.num_blocks // self.kv.blocks_per_request

    @property
    def max_tokens(self) -> int:
        return self.num_blocks * self.kv.block_size

    def check(self, requested: int) -> ConcurrencyCheck:
        per_request = self.kv.blocks_per_request
        return ConcurrencyCheck(
            requested, requested * per_request, self.num_blocks, self.kv.block_bytes, per_request
        )


def plan_memory(inputs: MemoryInputs) -> MemoryPlan:
    """Validate `inputs` (ConfigError naming the option) and plan."""
    check_inputs(inputs)
    return compute_plan(inputs)


def compute_plan(inputs: MemoryInputs) -> MemoryPlan:
    """The arithmetic alone; `inputs` are assumed valid."""
    weights = weight_memory(inputs.model, inputs.weights, inputs.tp)
    kv = kv_memory(inputs.model.config, inputs.kv_dtype, inputs.tp, inputs.block_size,
                   inputs.context)  # fmt: skip
    budget = int(inputs.gpu.memory_bytes * inputs.utilization)
    overhead, activations, logits = _step_reserve(inputs)
    free = budget - weights.per_gpu_bytes - overhead - activations - logits
    fragmentation = int(max(free, 0) * inputs.runtime.fragmentation)
    reserve = Reserve(overhead, activations, logits, fragmentation)
    pool = max(free - fragmentation, 0)
    return MemoryPlan(
        inputs, budget, weights, kv, reserve, pool, max(-free, 0), pool // kv.block_bytes
    )


def weight_memory(model: ModelSpec, precision: WeightPrecision, tp: int) -> WeightMemory:
    params = model.params()
    quantized = precision.matrix_bytes(params.linear)
    embeddings = (params.embedding + params.lm_head) * precision.unquantized_bytes
    replicated = params.other * precision.unquantized_bytes
    per_gpu = -(-(quantized + embeddings) // tp) + replicated
    return WeightMemory(precision, params, quantized, embeddings + replicated, per_gpu)


def kv_heads_per_gpu(config: ModelConfig, tp: int) -> int:
    """KV heads split across `tp` GPUs; with more GPUs than heads each holds a copy of one."""
    return max(config.num_kv_heads // tp, 1)


def kv_memory(config: ModelConfig, dtype: str, tp: int, block_size: int, context: int) -> KvMemory:
    dtype_bytes = KV_DTYPE_BYTES[dtype]
    heads = kv_heads_per_gpu(config, tp)
    shard = replace(config, num_kv_heads=heads)
    return KvMemory(
        dtype=dtype,
        dtype_bytes=dtype_bytes,
        bytes_per_token=config.kv_bytes_per_token(dtype_bytes),
        bytes_per_token_per_gpu=shard.kv_bytes_per_token(dtype_bytes),
        kv_heads_per_gpu=heads,
        block_size=block_size,
        blocks_per_request=-(-context // block_size),
    )


def activation_bytes_per_token(config: ModelConfig, tp: int, act_bytes: int) -> int:
    """Peak live activations per batched token inside one layer: the residual stream and
    the normed input (2 x hidden) plus the MLP's gate, up and their product (3 x
    intermediate / tp), at the compute dtype."""
    return (2 * config.hidden_size + 3 * config.intermediate_size // tp) * act_bytes


def activation_dtype_bytes(precision: WeightPrecision) -> int:
    """Compute dtype: fp32 models run in fp32, everything else in 16-bit."""
    return 4 if precision.unquantized_bytes == 4 else 2


def _step_reserve(inputs: MemoryInputs) -> tuple[int, int, int]:
    runtime, config = inputs.runtime, inputs.model.config
    act_bytes = activation_dtype_bytes(inputs.weights)
    per_token = activation_bytes_per_token(config, inputs.tp, act_bytes)
    activations = runtime.max_batched_tokens * per_token
    logits = min(runtime.max_num_seqs, runtime.max_batched_tokens) * config.vocab_size
    return runtime.overhead_bytes, activations, logits * LOGITS_BYTES


def check_inputs(inputs: MemoryInputs) -> None:
    """Raise ConfigError naming the option for anything that cannot be planned."""
    _check_tp(inputs.model.config, inputs.tp)
    limit = inputs.model.config.max_position_embeddings
    if not 1 <= inputs.context <= limit:
        raise ConfigError(
            f"--context {inputs.context}: {inputs.model.name} takes 1 to {limit} tokens "
            "(max_position_embeddings)."
        )
    if not 0 < inputs.utilization <= 1:
        raise ConfigError(
            f"--gpu-memory-utilization {inputs.utilization} must be in (0, 1], e.g. 0.9."
        )
    if inputs.block_size < 1:
        raise ConfigError(f"--block-size must be at least 1 (got {inputs.block_size}).")
    if inputs.concurrency is not None and inputs.concurrency < 1:
        raise ConfigError(f"--concurrency must be at least 1 (got {inputs.concurrency}).")
    _check_runtime(inputs.runtime)


def _check_tp(config: ModelConfig, tp: int) -> None:
    if tp < 1:
        raise ConfigError(f"--tp must be at least 1 (got {tp}).")
    heads, kv = config.num_heads, config.num_kv_heads
    if heads % tp or (kv % tp and tp % kv):
        raise ConfigError(
            f"--tp {tp} cannot split {heads} attention heads and {kv} KV heads evenly; "
            f"use a divisor of {heads} that divides or is a multiple of {kv}."
        )


def _check_runtime(runtime: RuntimeAssumptions) -> None:
    if not 0 <= runtime.fragmentation < 1:
        raise ConfigError(f"--fragmentation {runtime.fragmentation} must be in [0, 1), e.g. 0.05.")
    if runtime.max_batched_tokens < 1:
        raise ConfigError("--max-batched-tokens must be at least 1.")
    if runtime.max_num_seqs < 1:
        raise ConfigError("--max-num-seqs must be at least 1.")
    if runtime.overhead_bytes < 0:
        raise ConfigError("--runtime-overhead cannot be negative.")
