"""This machine's ceilings, measured in the same run as a benchmark, and the decode speeds they
bound for a model.

Two measurements with torch, best of N after one warm-up: memory bandwidth from a large
`dst.copy_(src)` (counted as read + write: 2 × the tensor's bytes per copy; a decode step mostly
reads), and matmul throughput from square matmuls (2·n³ FLOPs each). From them, for a model:
batch-1 decode cannot beat bandwidth / weight bytes read per step, nor matmul throughput /
FLOPs per token. Units: GB = 1e9 bytes, GFLOP = 1e9 FLOPs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from strata.engine.model_config import ModelConfig

GiB = 1 << 30
INPUT_EMBEDDING_SUFFIX = "embed_tokens.weight"
LM_HEAD_SUFFIX = "lm_head.weight"


@dataclass(frozen=True)
class Ceilings:
    bandwidth_gbps: float  # read + write bytes of a tensor copy per second, in GB/s
    matmul_gflops_fp32: float
    matmul_gflops_bf16: float
    threads: int  # torch's intra-op threads during the measurement
    method: str  # how the numbers were measured, in words


@dataclass(frozen=True)
class ModelBounds:
    """Batch-1 decode ceilings for one model at one dtype on this machine."""

    dtype: str
    weight_bytes: int  # weights one decode step reads
    flops_per_token: int
    decode_bound_tok_s: float  # from memory bandwidth
    compute_bound_tok_s: float  # from matmul throughput


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` timed calls of `fn`, after one untimed warm-up call."""
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def memory_bandwidth_gbps(nbytes: int = GiB, repeats: int = 5) -> float:
    """GB/s moved by `dst.copy_(src)` on float32 tensors of `nbytes`: read + write, 2·nbytes."""
    src = torch.ones(nbytes // 4, dtype=torch.float32)  # ones, not empty: pages really mapped
    dst = torch.zeros_like(src)
    seconds = best_seconds(lambda: dst.copy_(src), repeats)
    return 2 * src.numel() * 4 / seconds / 1e9


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an (n, n) @ (n, n) matmul in `dtype`."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    seconds = best_seconds(lambda: torch.mm(a, b, out=out), repeats)
    return 2 * n**3 / seconds / 1e9


def measure_ceilings(copy_bytes: int = GiB, matmul_n: int = 2048, repeats: int = 5) -> Ceilings:
    return Ceilings(
        bandwidth_gbps=memory_bandwidth_gbps(copy_bytes, repeats),
        matmul_gflops_fp32=matmul_gflops(torch.float32, matmul_n, repeats),
        matmul_gflops_bf16=matmul_gflops(torch.bfloat16, matmul_n, repeats),
        threads=torch.get_num_threads(),
        method=(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, best of {repeats} "
            f"after a warm-up: bandwidth = 2 x {copy_bytes / GiB:g} GiB / time of a float32 "
            f"dst.copy_(src) (read + write); matmul = 2 x {matmul_n}^3 / time of torch.mm"
        ),
    )


def decode_bound_tok_s(weight_bytes: int, bandwidth_gbps: float, batch_size: int = 1) -> float:
    """Tokens/s if every decode step only streamed the weights once at `bandwidth_gbps`."""
    return batch_size * bandwidth_gbps * 1e9 / weight_bytes


def compute_bound_tok_s(flops_per_token: int, gflops: float) -> float:
    """Tokens/s if every FLOP ran at matmul speed."""
    return gflops * 1e9 / flops_per_token


def parameter_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in a folder's *.safetensors files, without loading the weights."""
    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as weights:
            for name in weights.keys():  # noqa: SIM118 (safe_open is not a Mapping)
                shapes[name] = tuple(weights.get_slice(name).get_shape())
    if not shapes:
        raise FileNotFoundError(f"{folder}: no *.safetensors weights.")
    return shapes


def model_weight_bytes(
    source: Path | Mapping[str, torch.Tensor], dtype: torch.dtype = torch.float32
) -> int:
    """Bytes of weights one decode step reads, stored as `dtype`: every tensor, except an
    input-embedding table that has its own lm_head (its lookup reads only a row per token).
    With tied embeddings the table is the lm_head and counts in full."""
    if isinstance(source, Mapping):
        shapes = {name: tuple(t.shape) for name, t in source.items()}
    else:
        shapes = parameter_shapes(source)
    untied = any(name.endswith(LM_HEAD_SUFFIX) for name in shapes)
    elements = sum(
        math.prod(shape)
        for name, shape in shapes.items()
        if not (untied and name.endswith(INPUT_EMBEDDING_SUFFIX))
    )
    return elements * dtype.itemsize


def flops_per_token(config: ModelConfig, context_tokens: int = 0) -> int:
    """Forward FLOPs for one token: 2 per weight of the projections, MLP and lm_head (the
    embedding lookup is free, norms and biases are ignored), plus attention over
    `context_tokens` earlier tokens (scores and weighted sum: 4·heads·head_dim per token)."""
    c = config
    attention = c.hidden_size * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads)  # q, o, k, v
    mlp = 3 * c.hidden_size * c.intermediate_size  # gate, up, down
    weights = c.num_layers * (attention + mlp) + c.hidden_size * c.vocab_size
    scores = c.num_layers * 4 * c.num_heads * c.head_dim * context_tokens
    return 2 * weights + scores


def model_bounds(ceilings: Ceilings, folder: Path, dtype: torch.dtype) -> ModelBounds:
    weight_bytes = model_weight_bytes(folder, dtype)
    flops = flops_per_token(ModelConfig.from_folder(folder))
    gflops = ceilings.matmul_gflops_bf16 if dtype == torch.bfloat16 else ceilings.matmul_gflops_fp32
    return ModelBounds(
        dtype=str(dtype).removeprefix("torch."),
        weight_bytes=weight_bytes,
        flops_per_token=flops,
        decode_bound_tok_s=decode_bound_tok_s(weight_bytes, ceilings.bandwidth_gbps),
        compute_bound_tok_s=compute_bound_tok_s(flops, gflops),
    )
