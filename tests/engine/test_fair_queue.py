"""The `fair` scheduling policy: token-fair admission per fairness key, in the scheduler and
end to end (the real engine server, the bundled SmolLM2 and the `openai` SDK: one tenant floods,
another's TTFT stays low, where FCFS makes it wait behind the whole flood)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from strata.engine.batch_policy import FixedBatchPolicy
from strata.engine.block_manager import BlockManager
from strata.engine.fair_queue import FairTokenQueue
from strata.engine.queue_policy import FcfsQueue
from strata.engine.request import Request, RequestStatus
from strata.engine.sampling_params import SamplingParams
from strata.engine.scheduler import Scheduler, SchedulerConfig
from strata.errors import InvalidRequestError
from strata.fairness import KEY_HEADER, WEIGHT_HEADER
from tests.support.live_server import MODEL, TOKEN, LiveServer, make_engine

EOS = 0


def _scheduler(*, max_num_seqs: int = 2, max_waiting: int = 512) -> Scheduler:
    config = SchedulerConfig(max_waiting, max_model_len=256, policy="fair")
    batch = FixedBatchPolicy(max_num_seqs, 256)
    return Scheduler(config, BlockManager(512, 4), [EOS], batch)


def _request(rid: str, key: str | None, *, weight: float = 1.0, n_prompt: int = 8) -> Request:
    params = SamplingParams(max_tokens=4, ignore_eos=True)
    return Request(rid, list(range(1, n_prompt + 1)), params, fairness_key=key, weight=weight)


def _step(s: Scheduler) -> None:
    out = s.schedule()
    s.update(out, [7] * len(out.sampling_chunks))


def _admitted_before(s: Scheduler, target: Request, others: list[Request]) -> int:
    """Steps `s` until `target` is admitted; how many of `others` were admitted by then."""
    for _ in range(10_000):
        if target.first_scheduled_time is not None:
            return sum(r.first_scheduled_time is not None for r in others)
        _step(s)
    raise AssertionError("never admitted")


# -- the scheduler with policy "fair" ------------------------------------------------------------


def test_a_key_with_one_request_is_admitted_within_a_few_steps_of_a_100_request_flood() -> None:
    s = _scheduler()
    flood = [_request(f"a{i}", "A") for i in range(100)]
    for r in flood:
        s.add(r)
    _step(s)
    late = _request("b0", "B")
    s.add(late)
    assert _admitted_before(s, late, flood) <= 4  # 2 already running, at most 2 more


def test_the_same_flood_under_fcfs_admits_every_earlier_request_first() -> None:
    s = _scheduler()
    s.waiting = FcfsQueue()
    flood = [_request(f"a{i}", "A") for i in range(100)]
    for r in flood:
        s.add(r)
    _step(s)
    late = _request("b0", "B")
    s.add(late)
    assert _admitted_before(s, late, flood) == 100  # what the fair policy prevents


def test_weights_two_to_one_get_about_two_to_one_of_the_tokens_served() -> None:
    s = _scheduler(max_num_seqs=4)
    gold = [_request(f"g{i}", "gold", weight=2.0) for i in range(200)]
    bronze = [_request(f"b{i}", "bronze") for i in range(200)]
    for g, b in zip(gold, bronze, strict=True):
        s.add(g)
        s.add(b)
    for _ in range(150):  # both stay backlogged throughout
        _step(s)
    assert isinstance(s.waiting, FairTokenQueue)
    assert len(s.waiting) > 100 and s.waiting.num_keys == 2

    def served(requests: list[Request]) -> int:  # prompt and output tokens
        return sum(r.num_tokens for r in requests if r.first_scheduled_time is not None)

    assert served(gold) / served(bronze) == pytest.approx(2.0, rel=0.1)


def test_an_idle_key_banks_no_credit() -> None:
    s = _scheduler()
    early = [_request(f"a{i}", "A") for i in range(60)]
    for r in early:
        s.add(r)
    for _ in range(40):  # A alone is served for a while; B sends nothing
        _step(s)
    b_burst = [_request(f"b{i}", "B") for i in range(20)]
    for r in b_burst:
        s.add(r)
    admitted_before = {r.request_id for r in early if r.first_scheduled_time is not None}
    for _ in range(25):
        _step(s)
    a_after = [r for r in early if r.first_scheduled_time and r.request_id not in admitted_before]
    b_after = [r for r in b_burst if r.first_scheduled_time is not None]
    assert b_after and len(a_after) >= len(b_after) / 2  # A keeps sharing, no catch-up for B


def test_a_preempted_request_goes_back_to_the_front_of_its_key_and_is_not_charged_twice() -> None:
    queue = FairTokenQueue()
    first, second = _request("a0", "A"), _request("a1", "A")
    queue.push(first)
    queue.push(second)
    assert queue.pop() is first
    first.token_ids.append(7)  # it was served one output token, then preempted
    queue.push_front(first)
    assert queue.peek() is first
    charged = queue._queue.clock.start_tag("A")
    assert queue.pop() is first
    assert queue._queue.clock.start_tag("A") == charged  # prompt and the token: charged once


def test_without_keys_the_order_is_exactly_fcfs() -> None:
    fair, fcfs = FairTokenQueue(), FcfsQueue()
    requests = [_request(f"r{i}", None, n_prompt=1 + i % 7) for i in range(30)]
    for r in requests:
        fair.push(r)
        fcfs.push(r)
    order = []
    for i in range(30):
        if i == 10:  # one preemption in the middle
            for q in (fair, fcfs):
                q.push_front(order[-1])
            assert fair.pop() is fcfs.pop()
        order.append(fair.pop())
        assert order[-1] is fcfs.pop()
    assert len(fair) == len(fcfs) == 0


def test_finished_requests_stop_being_charged_and_are_forgotten() -> None:
    queue = FairTokenQueue()
    r = _request("a0", "A")
    queue.push(r)
    queue.pop()
    r.status = RequestStatus.FINISHED
    queue.peek()
    assert not queue._charged


def test_aborting_a_waiting_request_removes_it_from_its_key() -> None:
    s = _scheduler(max_num_seqs=1)
    a, b = _request("a", "A"), _request("b", "B")
    s.add(a)
    s.add(b)
    s.finish(b, "abort")
    assert len(s.waiting) == 1 and s.waiting.peek() is a


# -- the engine server: headers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_live(
    tiny_llama_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    engine = make_engine(tiny_llama_folder, tmp_path_factory.mktemp("cache"), scheduling="fair")
    with LiveServer(engine) as server:
        yield server


def _post(live: LiveServer, headers: dict[str, str]) -> httpx.Response:
    body = {"model": MODEL, "prompt": "Hello", "max_tokens": 2}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.post(f"{live.url}/v1/completions", json=body, headers={**auth, **headers})


@pytest.mark.parametrize("weight", ["0", "-2", "1000", "nan", "heavy"])
def test_a_bad_weight_header_is_a_400_naming_it(tiny_live: LiveServer, weight: str) -> None:
    reply = _post(tiny_live, {KEY_HEADER: "t1", WEIGHT_HEADER: weight})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == WEIGHT_HEADER and error["code"] == "invalid_fairness_weight"


def test_a_key_header_too_long_is_a_400(tiny_live: LiveServer) -> None:
    reply = _post(tiny_live, {KEY_HEADER: "k" * 300})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == KEY_HEADER


def test_good_headers_are_served(tiny_live: LiveServer) -> None:
    reply = _post(tiny_live, {KEY_HEADER: "t1", WEIGHT_HEADER: "2.5"})
    assert reply.status_code == 200, reply.text


async def test_the_python_api_refuses_a_weight_out_of_range(tiny_live: LiveServer) -> None:
    params = SamplingParams(max_tokens=2)
    with pytest.raises(InvalidRequestError) as caught:
        await anext(tiny_live.engine.generate([1, 2, 3], params, weight=0.0))
    assert caught.value.param == "weight"


# -- end to end: a flood against a few -----------------------------------------------------------

FLOOD, FEW = 40, 3
MAX_NUM_SEQS = 4


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["fair", "fcfs"])
def test_a_flooding_tenant_does_not_hold_back_another_tenants_first_tokens(
    smollm2_folder: Path, tmp_path: Path, policy: str
) -> None:
    """Tenant A streams 40 requests at once; when they all wait, tenant B sends 3. The SLO
    for B: its p95 first token arrives before at most a third of A's flood has started
    streaming (positions, not milliseconds, so a loaded machine cannot flip the verdict).
    `fair` keeps it; `fcfs` (the control) breaks it, B waiting behind nearly all of A."""
    engine = make_engine(smollm2_folder, tmp_path, scheduling=policy, max_num_seqs=MAX_NUM_SEQS,
                         max_model_len=512, kv_cache_memory="64MiB")  # fmt: skip
    with LiveServer(engine) as live:
        firsts = asyncio.run(_flood_and_few(live))
    a_firsts, b_firsts = firsts["A"], firsts["B"]
    b_p95 = sorted(b_firsts)[math.ceil(0.95 * FEW) - 1]
    a_before_b = sum(t < b_p95 for t in a_firsts)
    if policy == "fair":
        assert a_before_b <= FLOOD // 3, f"{a_before_b} of A's requests started before B's p95"
    else:
        assert a_before_b >= FLOOD - 2 * MAX_NUM_SEQS, f"only {a_before_b} of A's went first"


async def _flood_and_few(live: LiveServer) -> dict[str, list[float]]:
    client = live.async_client()
    flood = [asyncio.create_task(_first_token_at(client, "A", i)) for i in range(FLOOD)]
    await _until_waiting(live, FLOOD - MAX_NUM_SEQS)
    few = [asyncio.create_task(_first_token_at(client, "B", i)) for i in range(FEW)]
    firsts = {"A": await asyncio.gather(*flood), "B": await asyncio.gather(*few)}
    await client.close()
    return firsts


async def _until_waiting(live: LiveServer, count: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while live.engine.stats().num_waiting < count:
        assert time.monotonic() < deadline, f"the flood never queued: {live.engine.stats()}"
        await asyncio.sleep(0.01)


async def _first_token_at(client: openai.AsyncOpenAI, tenant: str, i: int) -> float:
    """Stream one chat completion as `tenant`; when its first text arrived (perf_counter)."""
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": f"Tell me about the number {i}."}],
        max_tokens=12,
        temperature=0.0,
        stream=True,
        extra_body={"ignore_eos": True, "min_tokens": 12},
        extra_headers={KEY_HEADER: tenant},
    )
    first = math.inf
    async for chunk in stream:
        if first == math.inf and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
    return first


def test_a_key_without_its_share_of_a_full_batch_takes_a_slot_at_once() -> None:
    s = _scheduler(max_num_seqs=2)
    flood = [_request(f"a{i}", "A", n_prompt=200) for i in range(3)]
    for request in flood:
        s.add(request)
    _step(s)  # two of A's long prompts fill the batch
    assert [r.status for r in flood[:2]] == [RequestStatus.RUNNING] * 2
    light = _request("b0", "B")
    s.add(light)
    out = s.schedule()  # B's share is one slot: it does not wait for one of A's answers
    assert light.status is RequestStatus.RUNNING
    assert flood[1] in out.preempted and flood[1].status is RequestStatus.WAITING  # the newest
    assert flood[0].status is RequestStatus.RUNNING
    out = s.schedule()  # both keys now hold their share: nobody is displaced again
    assert out.preempted == ()
    assert {r.fairness_key for r in s.running} == {"A", "B"}


def test_weights_set_the_shares_of_the_slots() -> None:
    s = _scheduler(max_num_seqs=3)
    for i in range(3):
        s.add(_request(f"a{i}", "A", n_prompt=60))
    _step(s)
    s.add(_request("b0", "B", weight=0.25))  # share 3 x 0.25 / 1.25 = 0.6 of a slot: waits
    assert s.schedule().preempted == ()
    s.add(_request("c0", "C", weight=2.0))  # behind B in the queue, which still waits
    assert s.schedule().preempted == ()
    assert all(r.fairness_key == "A" for r in s.running)
