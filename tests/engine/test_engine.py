"""The async engine: concurrent streams, abort, stop strings, overload, batching window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from strata.config import EngineSettings
from strata.engine.engine import Engine
from strata.engine.outputs import Delta
from strata.engine.sampling_params import SamplingParams
from strata.errors import InvalidRequestError, OverloadedError


def make_engine(folder: Path, tmp_path: Path, **overrides: object) -> Engine:
    settings = EngineSettings(model=str(folder), max_model_len=256, **overrides)  # type: ignore[arg-type]
    return Engine.from_settings(settings, tmp_path)


@pytest.fixture
async def engine(tiny_llama_folder: Path, tmp_path: Path) -> AsyncIterator[Engine]:
    eng = make_engine(tiny_llama_folder, tmp_path)
    await eng.start()
    yield eng
    await eng.stop()


async def collect(engine: Engine, prompt: list[int], params: SamplingParams) -> list[Delta]:
    return [d async for d in engine.generate(prompt, params)]


def greedy(n: int, **kw: object) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, **kw)  # type: ignore[arg-type]


async def test_concurrent_streams_each_get_all_their_tokens_in_shared_steps(engine: Engine) -> None:
    lengths = [12, 20, 8, 16, 24, 10]
    results = await asyncio.gather(
        *(collect(engine, [5 + i, 17, 42, 99], greedy(n)) for i, n in enumerate(lengths))
    )
    for deltas, n in zip(results, lengths, strict=True):
        assert sum(len(d.token_ids) for d in deltas) == n
        assert deltas[-1].finish_reason == "length" and deltas[-1].completion_tokens == n
        assert deltas[-1].timing is not None and deltas[-1].timing.ttft_s is not None
        assert all(d.finish_reason is None for d in deltas[:-1])
    assert engine.stats().num_steps < sum(lengths) / 2


async def test_closing_a_stream_aborts_and_frees_its_blocks_at_once(engine: Engine) -> None:
    stream = engine.generate(list(range(3, 40)), greedy(200))
    first = await stream.__anext__()
    assert first.token_ids
    assert engine.stats().kv_blocks_used > 0
    await stream.aclose()  # the client went away
    stats = engine.stats()
    assert stats.kv_blocks_used == 0 and stats.num_running == 0 and stats.num_waiting == 0


async def test_stop_string_cuts_the_text_and_finishes_with_stop(engine: Engine) -> None:
    prompt = [7, 8, 9, 10]
    full = "".join(d.text for d in await collect(engine, prompt, greedy(40)))
    stop = full[len(full) // 2 : len(full) // 2 + 3]
    assert stop.strip(), "need a visible stop string"
    deltas = await collect(engine, prompt, greedy(40, stop=(stop,)))
    text = "".join(d.text for d in deltas)
    assert text == full[: full.index(stop)]
    assert deltas[-1].finish_reason == "stop"
    assert engine.stats().kv_blocks_used == 0


async def test_same_seed_same_text(engine: Engine) -> None:
    """Seeded sampling repeats exactly. (Neighbours' draws never leak into a seeded row:
    test_sampler covers that on equal logits; across batch shapes the logits themselves may
    differ in the last bits, as in every batching engine.)"""
    params = SamplingParams(max_tokens=16, temperature=1.0, seed=1234, ignore_eos=True)
    first = await collect(engine, [11, 12, 13], params)
    second = await collect(engine, [11, 12, 13], params)
    other = await collect(
        engine, [11, 12, 13], SamplingParams(max_tokens=16, seed=99, ignore_eos=True)
    )
    tokens = [t for d in first for t in d.token_ids]
    assert [t for d in second for t in d.token_ids] == tokens
    assert [t for d in other for t in d.token_ids] != tokens


async def test_requests_that_cannot_fit_are_rejected_naming_the_field(engine: Engine) -> None:
    with pytest.raises(InvalidRequestError) as err:
        await collect(engine, [5] * 300, greedy(4))
    assert err.value.param == "prompt"
    with pytest.raises(InvalidRequestError) as err:
        await collect(engine, [5] * 200, greedy(100))
    assert err.value.param == "max_tokens" and "at most 56" in err.value.message


async def test_full_queue_rejects_new_requests(tiny_llama_folder: Path, tmp_path: Path) -> None:
    eng = make_engine(tiny_llama_folder, tmp_path, max_waiting=1)  # not started: nothing drains
    held = eng.generate([5, 6, 7], greedy(4))
    pending = asyncio.ensure_future(held.__anext__())
    await asyncio.sleep(0.01)
    with pytest.raises(OverloadedError):
        await collect(eng, [5, 6, 7], greedy(4))
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)


async def test_batching_window_gathers_requests_into_one_prefill(
    tiny_llama_folder: Path, tmp_path: Path
) -> None:
    eng = make_engine(tiny_llama_folder, tmp_path, batch_window_ms=1000)
    await eng.start()
    try:
        tasks = []
        for i in range(4):
            tasks.append(asyncio.ensure_future(collect(eng, [3 + i, 4, 5], greedy(10))))
            await asyncio.sleep(0.02)  # arrivals spread over 60 ms, well inside the 1 s window
        await asyncio.gather(*tasks)
        assert eng.stats().num_steps == 10  # one shared prefill, then 9 shared decodes
    finally:
        await eng.stop()


async def test_stopping_the_engine_ends_open_streams_with_abort(
    tiny_llama_folder: Path, tmp_path: Path
) -> None:
    eng = make_engine(tiny_llama_folder, tmp_path)
    await eng.start()
    stream = eng.generate([3, 4, 5], greedy(200))
    await stream.__anext__()
    await eng.stop()
    rest = [d async for d in stream]
    assert rest and rest[-1].finish_reason == "abort"
    assert eng.stats().kv_blocks_used == 0


async def test_slo_policy_sheds_what_it_cannot_serve_in_time(
    tiny_llama_folder: Path, tmp_path: Path
) -> None:
    from strata.config import SloSettings

    settings = EngineSettings(model=str(tiny_llama_folder), max_model_len=256, max_num_seqs=2)
    eng = Engine.from_settings(settings, tmp_path, SloSettings(enabled=True, ttft_p95_ms=20))
    await eng.start()
    try:

        async def client(i: int) -> str:
            await asyncio.sleep(0.004 * i)  # a steady stream of arrivals
            try:
                deltas = await collect(eng, [3 + i % 50, 4, 5], greedy(30))
            except OverloadedError as err:
                assert err.code == "slo_overload" and err.retry_after_s
                return "shed"
            assert deltas[-1].completion_tokens == 30
            return "served"

        outcomes = await asyncio.gather(*(client(i) for i in range(60)))
    finally:
        await eng.stop()
    assert "served" in outcomes and "shed" in outcomes
    assert eng.stats().num_shed == outcomes.count("shed")
