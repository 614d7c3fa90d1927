"""`strata bench engine --profile OUT.json`: measure how long the engine's steps take against
what they compute, fit the step-time model, save both for `strata plan batching`.

The engine runs as it serves (the async `Engine` in this process, streaming every request with
detokenization, the given dtype and threads) through bursts of requests chosen to cover the
shapes a served load produces: every batch size up to the cap, decode contexts from a few
dozen tokens to several hundred, whole and chunked prefills, and prefills that join running
decodes (the bursts' arrivals are staggered). Every step is recorded with its exact shape
through `EngineCore.step_observers`; the first burst only warms the engine up.

    strata bench engine --profile docs/benchmarks/step-profile.json [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from strata.bench.records import BenchRequest
from strata.compute.profile import EngineProfile, EngineSizes
from strata.compute.step_time import StepShape, fit_step_time
from strata.engine.scheduler import SchedulerOutput
from strata.errors import ConfigError, StrataError

if TYPE_CHECKING:
    from strata.bench.strata_peer import StrataPeer


@dataclass(frozen=True)
class Burst:
    """`batch` requests of `prompt_tokens` in and `output_tokens` out, `spacing_s` apart. A
    `mixed` burst spreads the lengths instead, as served traffic does: prompts evenly from
    `MIXED_MIN_PROMPT` up to `prompt_tokens`, outputs from 1/batch of `output_tokens` up to
    all of it, in an order unrelated to the prompts', so its decode batches shrink one request
    at a time over contexts of every length."""

    batch: int
    prompt_tokens: int
    output_tokens: int
    spacing_s: float = 0.0
    mixed: bool = False

    def lengths(self, index: int) -> tuple[int, int]:
        """Prompt and output tokens of the burst's `index`-th request."""
        if not self.mixed or self.batch == 1:
            return self.prompt_tokens, self.output_tokens
        low = min(MIXED_MIN_PROMPT, self.prompt_tokens)
        prompt = low + (self.prompt_tokens - low) * index // (self.batch - 1)
        rank = (index * MIXED_STRIDE) % self.batch  # a permutation when gcd(stride, batch) = 1
        return prompt, max(1, self.output_tokens * (rank + 1) // self.batch)


MIXED_MIN_PROMPT = 20
MIXED_STRIDE = 7


def default_grid(max_num_seqs: int, token_budget: int, max_model_len: int) -> list[Burst]:
    """Short and long contexts at every power-of-two batch up to the cap (and the cap), half of
    them staggered so prefills join running decodes; one prompt long enough to be chunked; a
    trickle of lone requests as light traffic brings them. Prompts are cut to fit the context."""
    batches = sorted({b for b in (1, 2, 4, 8, 16, 32, 64, 128) if b < max_num_seqs}
                     | {max_num_seqs})  # fmt: skip
    shapes = [(32, 16, 0.0), (200, 12, 0.03)]
    grid = [Burst(b, prompt, out, gap) for b in batches for prompt, out, gap in shapes]
    grid += [Burst(min(8, max_num_seqs), 600, 8), Burst(1, 2 * token_budget + 40, 4)]
    grid += [Burst(12, 80, 16, spacing_s=0.25)]  # a trickle: lone prefills, some from idle
    grid += [Burst(b, 200, 96, 0.02, mixed=True) for b in batches if b >= 8]  # served-like
    return [replace(b, prompt_tokens=min(b.prompt_tokens, max_model_len - b.output_tokens - 1))
            for b in grid]  # fmt: skip


class StepRecorder:
    """A step observer: keeps each step's shape and wall seconds (called on the engine thread)."""

    def __init__(self, block_size: int) -> None:
        self.block_size = block_size
        self.steps: list[tuple[StepShape, float]] = []

    def __call__(self, output: SchedulerOutput, seconds: float) -> None:
        self.steps.append((StepShape.of(output, self.block_size), seconds))


def burst_requests(burst: Burst, rng: random.Random, vocab: int) -> list[BenchRequest]:
    """Random token ids: no two requests share a prefix block, so nothing hits the cache."""
    requests = []
    for i in range(burst.batch):
        prompt, output = burst.lengths(i)
        ids = [rng.randrange(1000, vocab) for _ in range(prompt)]
        requests.append(BenchRequest(ids, output, i * burst.spacing_s))
    return requests


def profile_engine(
    peer: StrataPeer, grid: Sequence[Burst], *, repeat: int = 1, seed: int = 0
) -> EngineProfile:
    """Run `grid` `repeat` times on `peer`'s engine (after one warm-up burst) and fit."""
    rng = random.Random(f"strata-step-profile:{seed}")
    recorder = StepRecorder(peer.engine.core.config.block_size)
    warm_up(peer, rng)
    for number in range(repeat):
        profile_pass(peer, grid, rng, recorder)
        print(f"  profile pass {number + 1}/{repeat}: {len(recorder.steps)} steps",
              file=sys.stderr, flush=True)  # fmt: skip
    return EngineProfile(engine_sizes(peer), fit_step_time(recorder.steps), recorder.steps)


def warm_up(peer: StrataPeer, rng: random.Random) -> None:
    """One small burst, not recorded: the first steps of a fresh engine run slow."""
    peer.run(burst_requests(Burst(4, 64, 8, 0.02), rng, vocab_size(peer)))


def profile_pass(
    peer: StrataPeer, grid: Sequence[Burst], rng: random.Random, recorder: StepRecorder
) -> None:
    """Run every burst of `grid` once, `recorder` watching every step."""
    core = peer.engine.core
    core.step_observers.append(recorder)
    try:
        for burst in grid:
            peer.run(burst_requests(burst, rng, vocab_size(peer)))
    finally:
        core.step_observers.remove(recorder)


def vocab_size(peer: StrataPeer) -> int:
    return peer.engine.core.runner.config.vocab_size


def engine_sizes(peer: StrataPeer) -> EngineSizes:
    import torch

    config = peer.engine.core.config
    return EngineSizes(
        block_size=config.block_size,
        num_blocks=config.num_blocks,
        max_model_len=config.max_model_len,
        max_num_seqs=config.max_num_seqs,
        max_num_batched_tokens=config.max_num_batched_tokens,
        max_waiting=config.max_waiting,
        enable_prefix_caching=config.enable_prefix_caching,
        dtype=str(peer.engine.core.runner.dtype).removeprefix("torch."),
        threads=torch.get_num_threads(),
    )


def machine() -> str:
    import torch

    return (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"load average {os.getloadavg()[0]:.1f} at the start")  # fmt: skip


# -- the command ---------------------------------------------------------------------------------


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """The engine settings a profile (or a validation run) is measured under."""
    parser.add_argument("--model", help="a model folder or .gguf (default: the bundled SmolLM2)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default all)")
    parser.add_argument("--max-num-seqs", type=int, default=32, help="the batch cap")
    parser.add_argument("--max-num-batched-tokens", type=int, default=512)
    parser.add_argument("--kv-cache-memory", default="512MiB")


def make_peer(args: argparse.Namespace, batch_window_ms: float = 0.0) -> StrataPeer:
    """The engine in this process, as `args` configure it; a bad setting raises ConfigError
    naming the option."""
    from pydantic import ValidationError

    from strata.bench.engine import MODEL_CACHE
    from strata.bench.strata_peer import StrataPeer
    from strata.engine.loader import resolve_model_folder

    try:
        return StrataPeer(
            resolve_model_folder(args.model, MODEL_CACHE),
            args.dtype,
            threads=args.threads,
            max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=args.max_num_batched_tokens,
            kv_cache_memory=args.kv_cache_memory,
            batch_window_ms=batch_window_ms,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        option = "--" + str(error["loc"][0]).replace("_", "-")
        raise ConfigError(f"{option}: {error['msg']}") from None


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="strata bench engine --profile", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--profile", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the grid")
    parser.add_argument("--seed", type=int, default=0)
    add_engine_options(parser)
    args = parser.parse_args(argv)
    try:
        measure(args, argv)
    except StrataError as exc:
        print(exc.message, file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None


def measure(args: argparse.Namespace, argv: list[str]) -> None:
    started = time.perf_counter()
    meta: dict[str, object] = {
        "command": "strata bench engine " + " ".join(argv),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    peer = make_peer(args)
    config = peer.engine.core.config
    grid = default_grid(config.max_num_seqs, config.max_num_batched_tokens, config.max_model_len)
    profile = profile_engine(peer, grid, repeat=args.repeat, seed=args.seed)
    meta["seconds"] = round(time.perf_counter() - started, 1)
    profile = EngineProfile(profile.engine, profile.step_time, profile.steps, meta)
    profile.write(args.profile)
    print(summary(profile, args.profile))


def summary(profile: EngineProfile, path: Path) -> str:
    model = profile.step_time
    terms = ", ".join(f"{name} {value:.3g}" for name, value in model.coefficients.items())
    return (
        f"wrote {path}: {len(profile.steps)} steps, batch 1-{profile.max_profiled_batch}, "
        f"{profile.engine.dtype}, {profile.engine.threads} threads\n"
        f"step seconds = {terms}\n"
        f"median |measured/predicted - 1| = {model.median_error:.1%}"
    )
