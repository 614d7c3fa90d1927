"""The step-time profiler on a real (tiny, random-weight) engine."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import pytest

from strata.bench.step_profile import (
    Burst,
    add_engine_options,
    burst_requests,
    default_grid,
    main,
    make_peer,
    profile_engine,
)
from strata.bench.strata_peer import StrataPeer
from strata.compute.profile import read_profile
from strata.errors import ConfigError


@pytest.fixture(scope="module")
def peer(tiny_llama_folder: Path) -> StrataPeer:
    return StrataPeer(
        tiny_llama_folder,
        "float32",
        max_model_len=256,
        kv_cache_memory="8MiB",
        max_num_seqs=4,
        max_num_batched_tokens=64,
    )


def test_the_grid_covers_every_batch_up_to_the_cap_and_a_chunked_prompt() -> None:
    grid = default_grid(max_num_seqs=12, token_budget=512, max_model_len=8192)
    assert sorted({b.batch for b in grid}) == [1, 2, 4, 8, 12]
    assert any(b.prompt_tokens > 512 for b in grid)  # prefilled in chunks
    assert any(b.spacing_s > 0 for b in grid)  # prefills joining running decodes


def test_the_grid_fits_the_context() -> None:
    grid = default_grid(max_num_seqs=4, token_budget=512, max_model_len=256)
    assert all(b.prompt_tokens + b.output_tokens < 256 for b in grid)


def test_burst_prompts_share_no_prefix() -> None:
    requests = burst_requests(Burst(5, 40, 3, 0.1), random.Random(0), vocab=49152)
    assert [r.arrival_s for r in requests] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
    assert len({tuple(r.prompt_token_ids[:16]) for r in requests}) == 5
    assert all(len(r.prompt_token_ids) == 40 and r.output_len == 3 for r in requests)


def test_a_mixed_burst_spreads_prompt_and_output_lengths_like_served_traffic() -> None:
    grid = default_grid(max_num_seqs=16, token_budget=512, max_model_len=8192)
    mixed = [b for b in grid if b.mixed]
    assert sorted(b.batch for b in mixed) == [8, 16]  # the larger batches, where contexts vary
    requests = burst_requests(Burst(16, 200, 96, 0.02, mixed=True), random.Random(0), 49152)
    prompts = [len(r.prompt_token_ids) for r in requests]
    outputs = [r.output_len for r in requests]
    assert min(prompts) == 20 and max(prompts) == 200
    assert sorted(outputs) == [96 * k // 16 for k in range(1, 17)]  # one finishes at a time
    assert outputs != sorted(outputs)  # the longest prompts are not the longest answers


def test_every_step_of_the_grid_is_recorded_and_fitted(peer: StrataPeer) -> None:
    grid = [Burst(1, 20, 6), Burst(4, 30, 5, spacing_s=0.01), Burst(2, 150, 3)]
    steps_before = peer.engine.core.num_steps
    profile = profile_engine(peer, grid, repeat=2)
    warmup_steps = peer.engine.core.num_steps - steps_before - len(profile.steps)
    assert 0 < warmup_steps <= 4 * 9  # the warm-up burst (4 x 64 in, 8 out) was not recorded
    # The bursts' requests share steps (how many at once depends on this machine's speed).
    assert 2 <= profile.max_profiled_batch <= 4
    assert all(shape.tokens <= 64 and shape.samples <= 4 for shape, _ in profile.steps)
    assert any(shape.prefill_attention > 64 * 64 for shape, _ in profile.steps)  # chunked
    assert profile.step_time.coefficients["base"] > 0
    assert len(profile.step_time.ratios) == len(profile.steps)
    assert profile.engine.max_num_seqs == 4 and profile.engine.block_size == 16
    assert peer.engine.core.step_observers == []  # the recorder is gone


def test_the_command_writes_a_profile_plan_batching_reads(
    tiny_llama_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "profile.json"
    main(
        [
            "--profile",
            str(out),
            "--model",
            str(tiny_llama_folder),
            "--max-num-seqs",
            "2",
            "--max-num-batched-tokens",
            "64",
            "--kv-cache-memory",
            "8MiB",
            "--dtype",
            "float32",
        ]
    )
    profile = read_profile(out)
    assert profile.engine.max_num_seqs == 2 and profile.engine.dtype == "float32"
    assert profile.meta["command"].startswith("strata bench engine --profile")
    assert len(profile.steps) > 20


def test_a_bad_engine_setting_names_the_option(tiny_llama_folder: Path) -> None:
    parser = argparse.ArgumentParser()
    add_engine_options(parser)
    args = parser.parse_args(["--model", str(tiny_llama_folder), "--max-num-seqs", "0"])
    with pytest.raises(ConfigError, match="--max-num-seqs: "):
        make_peer(args)
