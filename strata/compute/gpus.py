"""The GPU catalogue: memory per card as the driver reports it, by short name."""

from __future__ import annotations

from dataclasses import dataclass

from strata.compute.units import MiB
from strata.errors import ConfigError

CUSTOM = "custom"


@dataclass(frozen=True)
class Gpu:
    """One accelerator: `name` is the key in `pricing.gpu_hour_usd` too."""

    name: str
    label: str
    memory_bytes: int


# Total memory as `nvidia-smi` reports it on the common SKU (MiB), which is what a serving
# engine's utilization fraction applies to: less than the marketing size, because ECC (GDDR6
# cards) and firmware reservations (HBM cards) take a share. A100 cards report the full 40 /
# 80 GiB; H100 81,559 MiB; H200 143,771 MiB (141 GB marketed); L4 and A10G (24 GB GDDR6)
# report 23,034 and 23,028 MiB with ECC on.
CATALOGUE: dict[str, Gpu] = {
    gpu.name: gpu
    for gpu in (
        Gpu("l4", "NVIDIA L4 24GB", 23_034 * MiB),
        Gpu("a10g", "NVIDIA A10G 24GB", 23_028 * MiB),
        Gpu("a100-40gb", "NVIDIA A100 40GB", 40_960 * MiB),
        Gpu("a100-80gb", "NVIDIA A100 80GB", 81_920 * MiB),
        Gpu("h100-80gb", "NVIDIA H100 80GB", 81_559 * MiB),
        Gpu("h200", "NVIDIA H200 141GB", 143_771 * MiB),
    )
}
ALIASES = {"a100": "a100-80gb", "h100": "h100-80gb", "h200-141gb": "h200", "l4-24gb": "l4",
           "a10g-24gb": "a10g"}  # fmt: skip


def canonical_name(name: str) -> str:
    """`name` lower-cased, with aliases ('h100', 'A100') resolved to catalogue names."""
    key = name.strip().lower()
    return ALIASES.get(key, key)


def find_gpu(name: str | None, memory_bytes: int | None = None) -> Gpu:
    """The catalogue GPU `name`, or a custom one of `memory_bytes` (`--gpu-memory`)."""
    if memory_bytes is not None:
        if name not in (None, CUSTOM):
            raise ConfigError(
                f"--gpu-memory describes a custom GPU; drop --gpu {name} or --gpu-memory."
            )
        return Gpu(CUSTOM, f"custom GPU ({memory_bytes / MiB:,.0f} MiB)", memory_bytes)
    if name is None or canonical_name(name) == CUSTOM:
        raise ConfigError("--gpu custom needs --gpu-memory, e.g. --gpu-memory 48GiB.")
    gpu = CATALOGUE.get(canonical_name(name))
    if gpu is None:
        known = ", ".join([*CATALOGUE, "cpu"])
        raise ConfigError(
            f"--gpu {name!r} is not in the catalogue ({known}); "
            "for another card pass --gpu-memory SIZE, e.g. --gpu-memory 48GiB."
        )
    return gpu
