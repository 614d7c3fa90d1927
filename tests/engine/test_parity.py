"""strata's engine against transformers, greedy, fp32, on the same weights (see parity.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from strata.config import EngineSettings
from strata.engine.builder import build_core
from strata.engine.core import EngineCore
from strata.engine.model_config import ModelConfig
from strata.engine.request import Request
from strata.engine.sampling_params import SamplingParams
from tests.engine.parity import assert_greedy_matches

BLOCK = 4


def make_core(folder: Path, *, num_blocks: int = 256, **overrides: object) -> EngineCore:
    config = ModelConfig.from_folder(folder)
    memory = num_blocks * BLOCK * config.kv_bytes_per_token(4)
    settings = EngineSettings(
        model=str(folder),
        dtype="float32",
        block_size=BLOCK,
        kv_cache_memory=memory,  # type: ignore[arg-type]
        max_model_len=256,
        **overrides,  # type: ignore[arg-type]
    )
    core, _ = build_core(settings, folder)
    return core


def random_prompts(vocab: int, lengths: list[int], seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


def greedy(rid: str, prompt: list[int], max_tokens: int) -> Request:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    return Request(rid, prompt, params)


def run(core: EngineCore, hooks: dict[int, Callable[[], None]] | None = None) -> int:
    steps = 0
    while core.has_work:
        if hooks and steps in hooks:
            hooks.pop(steps)()
        core.step()
        steps += 1
    return steps


@pytest.fixture(params=["llama", "qwen2"])
def tiny(request: pytest.FixtureRequest) -> tuple[Path, torch.nn.Module]:
    folder: Path = request.getfixturevalue(f"tiny_{request.param}_folder")
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return folder, hf


def check(hf: torch.nn.Module, requests: list[Request], label: str) -> None:
    for r in requests:
        assert r.num_output_tokens == r.params.max_tokens, r.request_id
        assert_greedy_matches(hf, r.prompt_token_ids, r.output_token_ids, f"{label}/{r.request_id}")


def test_mixed_length_batch_matches_transformers(tiny: tuple[Path, torch.nn.Module]) -> None:
    folder, hf = tiny
    core = make_core(folder)
    prompts = random_prompts(hf.config.vocab_size, [5, 17, 33, 8, 60, 3])
    requests = [
        greedy(f"r{i}", p, n)
        for i, (p, n) in enumerate(zip(prompts, [20, 7, 15, 30, 10, 25], strict=True))
    ]
    for r in requests:
        core.add(r)
    run(core)
    check(hf, requests, "mixed")


def test_requests_joining_and_leaving_mid_batch_match(tiny: tuple[Path, torch.nn.Module]) -> None:
    folder, hf = tiny
    core = make_core(folder)
    prompts = random_prompts(hf.config.vocab_size, [9, 21, 4, 40, 13], seed=1)
    requests = [
        greedy(f"r{i}", p, n)
        for i, (p, n) in enumerate(zip(prompts, [6, 18, 25, 9, 12], strict=True))
    ]
    core.add(requests[0])
    core.add(requests[1])
    late = {
        3: lambda: core.add(requests[2]),
        8: lambda: core.add(requests[3]),
        11: lambda: core.add(requests[4]),
    }
    run(core, late)
    check(hf, requests, "join-leave")


def test_preempted_requests_recompute_and_match(tiny: tuple[Path, torch.nn.Module]) -> None:
    folder, hf = tiny
    core = make_core(folder, num_blocks=64)  # the minimum for max_model_len 256
    prompts = random_prompts(hf.config.vocab_size, [30, 25, 41, 12], seed=2)
    requests = [greedy(f"r{i}", p, 60) for i, p in enumerate(prompts)]  # 87 blocks in all
    for r in requests:
        core.add(r)
    run(core)
    assert core.scheduler.num_preemptions > 0
    check(hf, requests, "preemption")


def test_prefix_cache_hits_skip_prefill_and_match(tiny: tuple[Path, torch.nn.Module]) -> None:
    folder, hf = tiny
    core = make_core(folder)
    system = random_prompts(hf.config.vocab_size, [48], seed=3)[0]
    tails = random_prompts(hf.config.vocab_size, [5, 9, 3], seed=4)
    first = greedy("first", system + tails[0], 8)
    core.add(first)
    run(core)
    computed_before = core.prompt_tokens
    later = [greedy(f"later{i}", system + t, 8) for i, t in enumerate(tails[1:])]
    for r in later:
        core.add(r)
    run(core)
    assert all(r.num_cached_tokens == 48 for r in later)
    computed = core.prompt_tokens - computed_before
    assert computed == sum(r.num_prompt_tokens - 48 for r in later)
    assert core.block_manager.prefix_hits >= 96
    check(hf, [first, *later], "prefix")


def test_chunked_prefill_matches(tiny: tuple[Path, torch.nn.Module]) -> None:
    folder, hf = tiny
    core = make_core(folder, max_num_batched_tokens=16)
    prompts = random_prompts(hf.config.vocab_size, [70, 35, 5], seed=5)
    requests = [greedy(f"r{i}", p, 10) for i, p in enumerate(prompts)]
    for r in requests:
        core.add(r)
    run(core)
    check(hf, requests, "chunked")


def test_concurrent_requests_share_steps(tiny_llama_folder: Path) -> None:
    core = make_core(tiny_llama_folder)
    lengths = [10, 14, 18, 22, 24, 12, 16, 20]
    prompts = random_prompts(ModelConfig.from_folder(tiny_llama_folder).vocab_size, [8] * 8)
    for i, (p, n) in enumerate(zip(prompts, lengths, strict=True)):
        core.add(greedy(f"r{i}", p, n))
    steps = run(core)
    # One prefill step yields every request's first token, then one step per further token.
    assert steps == max(lengths)
    assert steps < sum(lengths) / 4


@pytest.mark.slow
def test_bundled_smollm2_batch_matches_transformers(smollm2_folder: Path) -> None:
    from strata.engine.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_folder(smollm2_folder)
    hf = AutoModelForCausalLM.from_pretrained(smollm2_folder, dtype=torch.float32).eval()
    questions = [
        "What is the capital of France?",
        "Write a haiku about the sea.",
        "List three prime numbers.",
        "Explain what a KV cache is in one sentence.",
    ]
    core = make_core(smollm2_folder, num_blocks=512)
    requests = []
    for i, q in enumerate(questions):
        text = tokenizer.apply_chat_template([{"role": "user", "content": q}])
        requests.append(greedy(f"q{i}", tokenizer.encode(text, add_special_tokens=False), 24))
        core.add(requests[-1])
    run(core)
    check(hf, requests, "smollm2")
    assert "Paris" in tokenizer.decode(requests[0].output_token_ids)
