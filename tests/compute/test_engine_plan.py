"""`--gpu cpu`: the planner's block count is the block count strata's engine allocates.

Two checks: against `blocks_for_memory` over a grid of settings and models, and against real
engines built with `build_core` (the bundled SmolLM2 and the tiny Llama and Qwen2 test
models), comparing the block manager's count and the bytes of the K/V tensors allocated.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from strata.compute.engine_plan import EngineInputs, engine_dtype, plan_engine
from strata.compute.models import load_model
from strata.compute.units import MiB
from strata.config import EngineSettings
from strata.engine.builder import build_core
from strata.engine.core import EngineCore, blocks_for_memory
from strata.engine.model_config import ModelConfig
from strata.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GRID = list(itertools.product(DTYPES, (1, 16, 32), (64 * MiB, 512 * MiB, 3 * MiB + 12345)))


def engine_inputs(spec: str, dtype: str, block: int, memory: int, max_len: int = 256,
                  **kw: object) -> EngineInputs:  # fmt: skip
    return EngineInputs(load_model(spec), dtype, memory, block, max_len, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def tiny_configs(tiny_llama_folder: Path, tiny_qwen2_folder: Path) -> list[str]:
    return [str(tiny_llama_folder), str(tiny_qwen2_folder)]


@pytest.mark.parametrize(("dtype", "block", "memory"), GRID)
def test_plan_matches_blocks_for_memory(
    dtype: str, block: int, memory: int, tiny_configs: list[str]
) -> None:
    """Equal block counts, or both refuse (a budget too small for one max-length request)."""
    for spec in ["smollm2-135m", *tiny_configs]:
        config = load_model(spec).config
        try:
            expected = blocks_for_memory(memory, block, config, DTYPES[dtype], 256)
        except ConfigError:
            with pytest.raises(ConfigError, match=r"would refuse to start"):
                plan_engine(engine_inputs(spec, dtype, block, memory))
            continue
        plan = plan_engine(engine_inputs(spec, dtype, block, memory))
        assert plan.num_blocks == expected
        assert plan.pool_bytes <= memory < plan.pool_bytes + plan.kv.block_bytes


def built(folder: Path, **settings: object) -> EngineCore:
    core, _ = build_core(EngineSettings(model=str(folder), **settings), folder)
    return core


def allocated_bytes(core: EngineCore) -> int:
    return sum(c.k.nbytes + c.v.nbytes for c in core.runner.caches)


@pytest.mark.parametrize(
    ("dtype", "block", "memory", "max_len"),
    [("float32", 16, 8 * MiB, 256), ("bfloat16", 8, 5 * MiB + 777, 512),
     ("auto", 32, 20 * MiB, None), ("float32", 1, MiB, 64)],
)  # fmt: skip
def test_plan_equals_the_engine_it_describes(
    tiny_configs: list[str], dtype: str, block: int, memory: int, max_len: int | None
) -> None:
    for folder in map(Path, tiny_configs):
        core = built(folder, dtype=dtype, block_size=block, kv_cache_memory=memory,
                     max_model_len=max_len)  # fmt: skip
        plan = plan_engine(EngineInputs(load_model(str(folder)), dtype, memory, block, max_len))
        assert plan.num_blocks == core.block_manager.num_blocks == core.config.num_blocks
        assert plan.pool_bytes == allocated_bytes(core)
        assert plan.max_model_len == core.config.max_model_len


@pytest.mark.slow
def test_plan_equals_the_bundled_engine(smollm2_folder: Path) -> None:
    core = built(smollm2_folder, dtype="float32", kv_cache_memory=96 * MiB, max_model_len=1024)
    plan = plan_engine(engine_inputs("smollm2-135m", "float32", 16, 96 * MiB, 1024))
    assert plan.num_blocks == core.block_manager.num_blocks == 96 * MiB // (16 * 46_080)
    assert plan.pool_bytes == allocated_bytes(core)


def test_a_budget_the_engine_refuses_is_refused_the_same_way(tiny_llama_folder: Path) -> None:
    memory = 100_000  # tiny Llama at fp32: 2 x 2 layers x 2 KV heads x 16 x 4 B = 1 KiB a token
    with pytest.raises(ConfigError, match=r"engine.kv_cache_memory"):
        built(tiny_llama_folder, dtype="float32", kv_cache_memory=memory, max_model_len=256)
    with pytest.raises(ConfigError, match=r"would refuse to start.*--kv-cache-memory"):
        plan_engine(engine_inputs(str(tiny_llama_folder), "float32", 16, memory, 256))


def test_concurrency_at_a_context() -> None:
    plan = plan_engine(engine_inputs("smollm2-135m", "float32", 16, 512 * MiB, 8192,
                                     context=2048, concurrency=12))  # fmt: skip
    assert plan.kv.bytes_per_token == 2 * 30 * 3 * 64 * 4
    assert plan.num_blocks == 512 * MiB // (16 * 46_080) == 728
    assert plan.max_concurrency == 728 // 128 == 5
    assert not plan.check(12).fits and plan.check(5).fits


def test_engine_mode_errors_name_the_option() -> None:
    with pytest.raises(ConfigError, match=r"--kv-dtype 'fp8'.*engine.dtype"):
        engine_dtype("fp8")
    assert engine_dtype("bf16") == "bfloat16"
    with pytest.raises(ConfigError, match=r"--context 9000.*--max-model-len"):
        plan_engine(engine_inputs("smollm2-135m", "float32", 16, 512 * MiB, 8192, context=9000))
    with pytest.raises(ConfigError, match=r"engine.max_model_len=9000 exceeds"):
        plan_engine(engine_inputs("smollm2-135m", "float32", 16, 512 * MiB, 9000))


def test_tiny_config_kv_shape(tiny_llama_folder: Path) -> None:
    config = ModelConfig.from_folder(tiny_llama_folder)
    plan = plan_engine(engine_inputs(str(tiny_llama_folder), "float32", 16, 8 * MiB))
    assert (
        plan.kv.bytes_per_token == 2 * config.num_layers * config.num_kv_heads * config.head_dim * 4
    )
