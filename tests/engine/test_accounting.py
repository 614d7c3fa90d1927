"""Replica time: each step's wall time split by tokens computed; the rest idle; busy + idle =
replica seconds. A fake clock for the rules, then the real engine (tiny model) end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from strata.engine.accounting import ReplicaAccountant
from strata.engine.engine import Engine
from strata.engine.request import Request
from strata.engine.sampling_params import SamplingParams
from strata.engine.scheduler import ScheduledChunk
from tests.engine.test_engine import greedy, make_engine


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def request(name: str) -> Request:
    return Request(name, [1, 2, 3], SamplingParams(max_tokens=4))


def chunk(req: Request, tokens: int) -> ScheduledChunk:
    return ScheduledChunk(req, 0, tokens, True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def accountant(clock: FakeClock) -> ReplicaAccountant:
    return ReplicaAccountant(clock)


def run_step(
    accountant: ReplicaAccountant, clock: FakeClock, seconds: float, *chunks: ScheduledChunk,
    still_running: bool = True,
) -> None:  # fmt: skip
    accountant.step_started()
    clock.now += seconds
    accountant.step_finished(chunks, still_running)


def test_a_step_is_split_by_the_tokens_each_request_computed(
    accountant: ReplicaAccountant, clock: FakeClock
) -> None:
    prefill, decode = request("a"), request("b")
    run_step(accountant, clock, 0.2, chunk(prefill, 30), chunk(decode, 10))
    assert prefill.replica_seconds == pytest.approx(0.15)
    assert decode.replica_seconds == pytest.approx(0.05)


def test_time_before_the_first_step_is_idle_and_the_step_is_busy(
    accountant: ReplicaAccountant, clock: FakeClock
) -> None:
    clock.now += 5.0
    run_step(accountant, clock, 1.0, chunk(request("a"), 8), still_running=False)
    clock.now += 2.0
    time = accountant.snapshot()
    assert (time.replica_s, time.busy_s, time.idle_s) == pytest.approx((8.0, 1.0, 7.0))
    assert time.unbilled_s == pytest.approx(0.0)


def test_the_gap_between_steps_of_a_running_batch_is_billed_to_the_next_step(
    accountant: ReplicaAccountant, clock: FakeClock
) -> None:
    a, b = request("a"), request("b")
    run_step(accountant, clock, 0.1, chunk(a, 1), chunk(b, 1))
    clock.now += 0.1  # publishing tokens, waiting for blocks: the batch is still running
    run_step(accountant, clock, 0.2, chunk(a, 1))
    assert a.replica_seconds == pytest.approx(0.05 + 0.3)
    assert b.replica_seconds == pytest.approx(0.05)
    assert accountant.snapshot().idle_s == pytest.approx(0.0)


def test_busy_plus_idle_is_replica_time_at_any_moment_even_mid_step(
    accountant: ReplicaAccountant, clock: FakeClock
) -> None:
    reqs = [request(str(i)) for i in range(3)]
    for i, seconds in enumerate((0.3, 0.01, 0.7, 0.05)):
        clock.now += 0.4 * i
        accountant.step_started()
        clock.now += seconds / 2
        mid = accountant.snapshot()
        assert mid.busy_s + mid.idle_s == pytest.approx(mid.replica_s, abs=1e-12)
        clock.now += seconds / 2
        accountant.step_finished([chunk(r, i + 1) for r in reqs], still_running=i % 2 == 0)
    end = accountant.snapshot()
    assert end.busy_s + end.idle_s == pytest.approx(end.replica_s, abs=1e-12)
    assert sum(r.replica_seconds for r in reqs) == pytest.approx(end.billed_s)


def test_idle_time_only_grows_while_nothing_runs(
    accountant: ReplicaAccountant, clock: FakeClock
) -> None:
    run_step(accountant, clock, 0.5, chunk(request("a"), 4), still_running=False)
    idle = [accountant.snapshot().idle_s]
    clock.now += 1.0
    idle.append(accountant.snapshot().idle_s)
    accountant.step_started()
    clock.now += 0.5
    idle.append(accountant.snapshot().idle_s)
    assert idle == pytest.approx([0.0, 1.0, 1.0])


def test_a_batch_aborted_between_steps_leaves_its_time_unbilled_and_then_idles(
    accountant: ReplicaAccountant, clock: FakeClock
) -> None:
    run_step(accountant, clock, 0.5, chunk(request("a"), 4), still_running=True)
    clock.now += 0.25
    accountant.batch_emptied()
    clock.now += 3.0
    time = accountant.snapshot()
    assert (time.busy_s, time.idle_s, time.unbilled_s) == pytest.approx((0.75, 3.0, 0.25))


# -- the real engine ----------------------------------------------------------------------------


@pytest.fixture
async def engine(tiny_llama_folder: Path, tmp_path: Path) -> AsyncIterator[Engine]:
    eng = make_engine(tiny_llama_folder, tmp_path, batch_window_ms=300)  # one shared prefill
    await eng.start()
    yield eng
    await eng.stop()


async def test_the_engine_bills_its_busy_time_to_requests_by_tokens(engine: Engine) -> None:
    async def run(prompt_len: int, n: int) -> float | None:
        deltas = [d async for d in engine.generate(list(range(5, 5 + prompt_len)), greedy(n))]
        return deltas[-1].replica_seconds

    await asyncio.sleep(0.05)  # some idle time first
    big, small = await asyncio.gather(run(120, 24), run(4, 24))
    await asyncio.sleep(0.05)
    time = engine.stats()
    assert big is not None and small is not None
    assert engine.stats().num_steps == 24  # every step shared
    assert big > small > 0  # the big prompt's prefill weighs 30x more; decodes split evenly
    assert big + small == pytest.approx(time.busy_s, rel=1e-6)  # nothing left unbilled
    assert time.idle_s >= 0.3  # before, the batching window, after
    assert time.busy_s + time.idle_s == pytest.approx(time.replica_s)
