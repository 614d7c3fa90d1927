from __future__ import annotations

import pytest

from strata.engine.batch_policy import FixedBatchPolicy
from strata.engine.block_manager import BlockManager
from strata.engine.request import Request, RequestStatus
from strata.engine.sampling_params import SamplingParams
from strata.engine.scheduler import Scheduler, SchedulerConfig, SchedulerOutput
from strata.errors import OverloadedError

EOS = 0


def _scheduler(
    *,
    num_blocks: int = 64,
    block_size: int = 4,
    max_num_seqs: int = 8,
    budget: int = 64,
    max_waiting: int = 16,
    max_model_len: int = 256,
    policy: str = "fcfs",
) -> Scheduler:
    config = SchedulerConfig(max_waiting, max_model_len, policy)
    batch = FixedBatchPolicy(max_num_seqs, budget)
    return Scheduler(config, BlockManager(num_blocks, block_size), [EOS], batch)


def _request(rid: str, n_prompt: int, **params: object) -> Request:
    params.setdefault("max_tokens", 8)
    return Request(rid, list(range(1, n_prompt + 1)), SamplingParams(**params))  # type: ignore[arg-type]


def _step(s: Scheduler, token: int = 7) -> SchedulerOutput:
    out = s.schedule()
    s.update(out, [token] * len(out.sampling_chunks))
    return out


def test_long_prompt_is_prefilled_in_chunks_within_the_token_budget() -> None:
    s = _scheduler(budget=16)
    r = _request("a", 40)
    s.add(r)
    sizes = [_step(s).num_tokens for _ in range(3)]
    assert sizes == [16, 16, 8]
    assert r.num_output_tokens == 1  # only the chunk that reached the end sampled


def test_decodes_are_scheduled_before_new_prefills_and_share_the_budget() -> None:
    s = _scheduler(budget=10)
    s.add(_request("a", 5))
    _step(s)
    s.add(_request("b", 30))
    out = s.schedule()
    assert [(c.request.request_id, c.num_tokens) for c in out.chunks] == [("a", 1), ("b", 9)]


def test_batch_cap_limits_running_requests() -> None:
    s = _scheduler(max_num_seqs=2)
    for i in range(4):
        s.add(_request(f"r{i}", 3))
    out = s.schedule()
    assert len(out.chunks) == 2 and len(s.running) == 2 and len(s.waiting) == 2


def test_full_queue_rejects_with_overloaded_error() -> None:
    s = _scheduler(max_waiting=2)
    s.add(_request("a", 3))
    s.add(_request("b", 3))
    with pytest.raises(OverloadedError) as err:
        s.add(_request("c", 3))
    assert err.value.status_code == 503 and err.value.retry_after_s
    assert len(s.waiting) == 2


def test_preemption_frees_the_newest_request_and_recomputes_it_later() -> None:
    s = _scheduler(num_blocks=4, block_size=4, max_num_seqs=4)
    old, new = _request("old", 7, max_tokens=8), _request("new", 7, max_tokens=8)
    s.add(old)
    s.add(new)
    _step(s)  # both prefilled: 2 blocks each, pool full
    _step(s)  # position 7 still fits in each second block
    assert s.block_manager.num_free_blocks == 0
    out = _step(s)  # old's position 8 needs a 3rd block: new is preempted
    assert out.preempted == (new,)
    assert new.status is RequestStatus.WAITING and new.block_table == []
    assert new.num_computed_tokens == 0 and new.num_output_tokens == 2
    recomputed = 0
    while not (old.is_finished and new.is_finished):
        out = _step(s)
        recomputed += sum(c.num_tokens for c in out.chunks if c.request is new and c.num_tokens > 1)
    assert old.num_output_tokens == new.num_output_tokens == 8
    assert recomputed > 0  # new's lost KV was computed again after readmission
    assert s.num_preemptions >= 1
    assert s.block_manager.num_free_blocks == 4


@pytest.mark.parametrize(
    ("params", "tokens", "reason", "n_out"),
    [
        ({"max_tokens": 3}, [5, 5, 5, 5], "length", 3),
        ({"max_tokens": 9}, [5, EOS, 5], "stop", 2),
        ({"max_tokens": 9, "ignore_eos": True}, [5, EOS, 5], "length", 9),
        ({"max_tokens": 9, "stop_token_ids": (6,)}, [5, 6], "stop", 2),
        ({"max_tokens": 9, "min_tokens": 3}, [EOS, EOS, EOS, EOS], "stop", 3),
    ],
)
def test_finish_reasons(
    params: dict[str, object], tokens: list[int], reason: str, n_out: int
) -> None:
    s = _scheduler()
    r = _request("a", 3, **params)
    s.add(r)
    for i in range(20):
        if r.is_finished:
            break
        _step(s, tokens[min(i, len(tokens) - 1)])
    assert r.finish_reason == reason and r.num_output_tokens == n_out
    assert s.block_manager.num_free_blocks == s.block_manager.num_blocks


def test_max_model_len_ends_a_request_with_length() -> None:
    s = _scheduler(max_model_len=10)
    r = _request("a", 6, max_tokens=100)
    s.add(r)
    while not r.is_finished:
        _step(s)
    assert r.num_tokens == 10 and r.finish_reason == "length"


def test_abort_mid_step_drops_late_results_and_frees_blocks() -> None:
    s = _scheduler()
    r = _request("a", 5)
    s.add(r)
    out = s.schedule()
    s.finish(r, "abort")
    assert s.block_manager.num_free_blocks == s.block_manager.num_blocks
    assert s.update(out, [7]) == [] and r.num_output_tokens == 0


def test_priority_policy_admits_lower_priority_value_first() -> None:
    s = _scheduler(max_num_seqs=1, policy="priority")
    low, high = _request("low", 3), _request("high", 3)
    high.priority = -1
    s.add(low)
    s.add(high)
    assert s.schedule().chunks[0].request is high
