"""Number formats: how many bits a weight takes at each precision, and bytes per KV element."""

from __future__ import annotations

from dataclasses import dataclass

from strata.errors import ConfigError

DEFAULT_GROUP_SIZE = 128
SCALE_BITS = 16  # one fp16 scale per quantization group (AWQ, GPTQ)


@dataclass(frozen=True)
class WeightPrecision:
    """How the decoder layers' matrices are stored. Quantized formats store `bits` per weight
    plus, per group of `group_size` weights, one fp16 scale and a `zero_bits` zero point.
    Embeddings, the LM head, norms and biases stay at `unquantized_bytes` per value
    (AWQ/GPTQ/FP8 checkpoints leave them unquantized)."""

    name: str
    bits: int
    group_size: int | None = None
    zero_bits: int = 0
    unquantized_bytes: int = 2

    @property
    def bits_per_weight(self) -> float:
        if self.group_size is None:
            return float(self.bits)
        return self.bits + (SCALE_BITS + self.zero_bits) / self.group_size

    def matrix_bytes(self, n_weights: int) -> int:
        """Bytes for `n_weights` matrix weights, group scales and zero points included."""
        bits = n_weights * self.bits
        if self.group_size is not None:
            bits += -(-n_weights // self.group_size) * (SCALE_BITS + self.zero_bits)
        return -(-bits // 8)

    def describe(self) -> str:
        if self.group_size is None:
            return f"{self.name}: {self.bits} bits per weight"
        return (
            f"{self.name}, group {self.group_size}: {self.bits} bits per weight + one "
            f"{SCALE_BITS}-bit scale and one {self.zero_bits}-bit zero point per "
            f"{self.group_size} weights = {self.bits_per_weight:.4g} bits per weight"
        )


_UNGROUPED = {
    "fp32": WeightPrecision("fp32", 32, unquantized_bytes=4),
    "fp16": WeightPrecision("fp16", 16),
    "bf16": WeightPrecision("bf16", 16),
    # FP8 checkpoints carry one fp32 scale per tensor: a few hundred bytes in all.
    "fp8": WeightPrecision("fp8", 8),
}
_GROUPED_BITS = {"int8": 8, "int4": 4}  # GPTQ/AWQ layout: zero points packed at `bits` each
WEIGHT_PRECISIONS = (*_UNGROUPED, *_GROUPED_BITS)

KV_DTYPE_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "fp8": 1}
_DTYPE_ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
                  "fp8_e4m3": "fp8", "fp8_e5m2": "fp8"}  # fmt: skip


def dtype_name(name: str) -> str:
    """'float16' -> 'fp16', 'bfloat16' -> 'bf16'; other names lower-cased."""
    key = name.strip().lower()
    return _DTYPE_ALIASES.get(key, key)


def weight_precision(name: str, group_size: int = DEFAULT_GROUP_SIZE) -> WeightPrecision:
    """The precision `--weights name` with `--group-size` (used by int8 and int4 only)."""
    key = dtype_name(name)
    if key in _UNGROUPED:
        return _UNGROUPED[key]
    if key not in _GROUPED_BITS:
        raise ConfigError(
            f"--weights {name!r} is not a precision strata plans for; use one of "
            f"{', '.join(WEIGHT_PRECISIONS)}."
        )
    if group_size < 1:
        raise ConfigError(f"--group-size must be at least 1 (got {group_size}); 128 is usual.")
    bits = _GROUPED_BITS[key]
    return WeightPrecision(key, bits, group_size, zero_bits=bits)


def kv_dtype_bytes(name: str) -> int:
    """Bytes per K or V element for `--kv-dtype name`."""
    key = dtype_name(name)
    if key not in KV_DTYPE_BYTES:
        raise ConfigError(
            f"--kv-dtype {name!r} is not a KV-cache dtype; use one of "
            f"{', '.join(KV_DTYPE_BYTES)} (or auto)."
        )
    return KV_DTYPE_BYTES[key]
