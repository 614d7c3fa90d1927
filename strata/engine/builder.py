"""Build an `EngineCore` from settings: load the model, size the KV pool, pick the batch policy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from strata.engine.batch_policy import BatchPolicy, FixedBatchPolicy
from strata.engine.core import (
    CoreConfig,
    EngineCore,
    blocks_for_memory,
    resolve_device,
    resolve_dtype,
    resolve_max_model_len,
)
from strata.engine.loader import load_state_dict
from strata.engine.model_config import ModelConfig
from strata.engine.model_runner import ModelRunner
from strata.engine.slo import SloBatchPolicy, SloTargets
from strata.engine.tokenizer import Tokenizer

if TYPE_CHECKING:
    from strata.config import EngineSettings, SloSettings


def build_core(
    settings: EngineSettings, folder: Path, slo: SloSettings | None = None
) -> tuple[EngineCore, Tokenizer]:
    """Load the model in `folder` and size the engine from `settings` (and `slo`)."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    model = ModelConfig.from_folder(folder)
    tokenizer = Tokenizer.from_folder(folder)
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    max_len = resolve_max_model_len(settings.max_model_len, model)
    num_blocks = blocks_for_memory(
        int(settings.kv_cache_memory), settings.block_size, model, dtype, max_len
    )
    eos = frozenset(tokenizer.eos_token_ids) | frozenset(model.eos_token_ids)
    runner = ModelRunner(
        model,
        load_state_dict(folder, dtype, device),
        num_blocks=num_blocks,
        block_size=settings.block_size,
        max_model_len=max_len,
        device=device,
        dtype=dtype,
        eos_token_ids=eos,
    )
    config = CoreConfig(
        block_size=settings.block_size,
        num_blocks=num_blocks,
        max_model_len=max_len,
        max_num_seqs=settings.max_num_seqs,
        max_num_batched_tokens=settings.max_num_batched_tokens,
        max_waiting=settings.max_waiting,
        enable_prefix_caching=settings.enable_prefix_caching,
        policy=settings.scheduling,
        batch_window_s=settings.batch_window_ms / 1000.0,
    )
    return EngineCore(config, runner, eos, batch_policy(config, slo)), tokenizer


def batch_policy(config: CoreConfig, slo: SloSettings | None) -> BatchPolicy:
    if slo is None or not slo.enabled:
        return FixedBatchPolicy(
            config.max_num_seqs, config.max_num_batched_tokens, config.batch_window_s
        )
    itl = slo.itl_p95_ms / 1000.0 if slo.itl_p95_ms else None
    return SloBatchPolicy(
        SloTargets(slo.ttft_p95_ms / 1000.0, itl),
        max_num_seqs_limit=config.max_num_seqs,
        token_budget_limit=config.max_num_batched_tokens,
    )
