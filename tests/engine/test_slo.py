"""The SLO controller, driven with a synthetic clock: it must move the cap the right way,
size steps from the fitted step-time model, and shed when the queue cannot be served in time."""

from __future__ import annotations

from strata.engine.batch_policy import QueueState
from strata.engine.slo import SloBatchPolicy, SloTargets, StepModel


def policy(ttft_s: float = 0.4, itl_s: float | None = None, cap: int = 32) -> SloBatchPolicy:
    return SloBatchPolicy(SloTargets(ttft_s, itl_s), max_num_seqs_limit=cap, token_budget_limit=512)


def run_steps(
    p: SloBatchPolicy, start: float, seconds: float, step_s: float, seqs: int | None = None
) -> float:
    now = start
    while now < start + seconds:
        now += step_s
        p.observe_step(
            step_s, num_tokens=seqs or p.max_num_seqs, num_seqs=seqs or p.max_num_seqs, now=now
        )
    return now


def test_cap_shrinks_when_steps_are_slower_than_the_target() -> None:
    p = policy(ttft_s=0.4)  # step target 0.1 s
    run_steps(p, 0.0, 3.0, step_s=0.2)
    assert p.max_num_seqs < 32
    assert p.max_num_seqs >= 1


def test_cap_grows_back_when_steps_speed_up_and_the_cap_binds() -> None:
    p = policy(ttft_s=0.4)
    now = run_steps(p, 0.0, 3.0, step_s=0.2)
    shrunk = p.max_num_seqs
    run_steps(p, now, 20.0, step_s=0.02)  # batch always full: the cap is what limits it
    assert p.max_num_seqs > shrunk
    assert p.max_num_seqs == 32  # back to the configured limit, never above


def test_cap_does_not_grow_when_it_is_not_what_limits_the_batch() -> None:
    p = policy(ttft_s=0.4)
    now = run_steps(p, 0.0, 3.0, step_s=0.2)
    shrunk = p.max_num_seqs
    run_steps(p, now, 10.0, step_s=0.02, seqs=1)  # light load, nobody waiting
    assert p.max_num_seqs == shrunk


def test_inter_token_slo_sets_the_step_target() -> None:
    p = policy(ttft_s=10.0, itl_s=0.05)
    run_steps(p, 0.0, 3.0, step_s=0.08)  # fine for TTFT/4 = 2.5 s, too slow for the ITL SLO
    assert p.max_num_seqs < 32


def test_token_budget_comes_from_the_fitted_step_model() -> None:
    p = policy(ttft_s=0.4)  # step target 0.1 s
    now = 0.0
    for i in range(200):
        tokens = 8 + (i * 37) % 300
        now += 0.3
        p.observe_step(0.01 + 0.001 * tokens, tokens, 4, now)
    assert abs(p.token_budget - 90) <= 2  # (0.1 - 0.01) / 0.001


def test_step_model_needs_varied_steps_before_it_answers() -> None:
    model = StepModel()
    for _ in range(20):
        model.add(16, 0.05)
    assert model.tokens_within(0.1) is None


def with_step_model(p: SloBatchPolicy, per_token_s: float = 0.001) -> float:
    """Feed steps of varied size costing 10 ms + `per_token_s` per token (all within the
    0.1 s step target, so the cap stays put); return the time."""
    now = 0.0
    for i in range(100):
        tokens = 8 + (i * 37) % 72
        now += 0.05
        p.observe_step(0.01 + per_token_s * tokens, tokens, 1, now)
    return now


def test_nothing_is_shed_before_anything_was_measured() -> None:
    p = policy(ttft_s=0.4)
    assert p.admit(QueueState(num_waiting=500, num_running=32, queued_tokens=10**6), 0.0) is None


def test_a_burst_is_shed_by_its_queued_prefill_before_any_request_finished() -> None:
    p = policy(ttft_s=0.4)  # step target 0.1 s
    now = with_step_model(p)
    assert p.admit(QueueState(0, 0, queued_tokens=100), now) is None  # 0.1 + 0.1 s
    retry = p.admit(QueueState(5, 0, queued_tokens=2000), now)  # 2 s of prefill ahead
    assert retry is not None and retry >= 1.0
    assert p.num_shed == 1


def test_a_full_batch_adds_the_wait_for_a_slot_at_the_service_rate() -> None:
    p = policy(ttft_s=0.4, cap=4)
    now = with_step_model(p)
    for i in range(10):
        p.observe_finish(now + i * 0.5)  # 2 requests/s
    now += 5.0
    assert p.admit(QueueState(0, 3, queued_tokens=50), now) is None  # a slot is free
    assert p.admit(QueueState(1, 4, queued_tokens=50), now) is not None  # 2 ahead: ~1 s


def test_fast_service_admits_a_queue() -> None:
    p = policy(ttft_s=0.4, cap=4)
    now = with_step_model(p, per_token_s=0.0001)
    for i in range(100):
        p.observe_finish(now + i * 0.01)  # 100 requests/s
    now += 1.0
    assert p.admit(QueueState(10, 4, queued_tokens=500), now) is None  # 0.05 + 0.11 + 0.1 s


def test_measured_ttft_over_the_slo_makes_admission_stricter() -> None:
    p = policy(ttft_s=0.4)
    now = with_step_model(p)
    state = QueueState(2, 0, queued_tokens=250)  # 0.25 + 0.1 = 0.35 s predicted
    assert p.admit(state, now) is None
    for _ in range(20):  # requests keep missing the SLO anyway
        now += 0.3
        p.observe_first_token(0.9, now)
        p.observe_step(0.05, 100, 4, now)
    assert p.admit(state, now) is not None
    assert p.slo_attainment == 0.0


def test_batching_window_only_when_arrivals_are_frequent() -> None:
    p = policy(ttft_s=0.5)
    for i in range(5):
        p.admit(QueueState(0, 0, 10), now=i * 1.0)  # one arrival a second: nobody to wait for
    assert p.batch_window_s == 0.0
    busy = policy(ttft_s=0.5)
    for i in range(50):
        busy.admit(QueueState(0, 0, 10), now=i * 0.005)  # 200 arrivals a second
    assert busy.batch_window_s == 0.05  # min(50 ms, 10% of the TTFT SLO)


def test_measured_ttft_well_inside_the_slo_lets_a_pessimistic_model_admit_more() -> None:
    p = policy(ttft_s=0.4)
    now = with_step_model(p)
    state = QueueState(3, 0, queued_tokens=400)  # ~0.4 s of prefill + a step: over 0.4 s
    assert p.admit(state, now) is not None
    for _ in range(40):  # yet requests keep getting their first token in 100 ms
        now += 0.3
        p.observe_first_token(0.1, now)
        p.observe_step(0.05, 40, 1, now)
    assert p.admit(state, now) is None


def test_slow_prefill_steps_do_not_shrink_the_cap() -> None:
    p = policy(ttft_s=0.4)  # step target 0.1 s
    now = 0.0
    for i in range(60):  # long prompts: every step carries 200-500 prefill tokens beside decodes
        now += 0.05
        tokens = 200 + (i * 37) % 300
        p.observe_step(0.01 + 0.001 * tokens, num_tokens=tokens, num_seqs=5, now=now)
    assert p.max_num_seqs == 32  # the budget answers for these steps, not the cap
    assert abs(p.token_budget - 90) <= 2  # (0.1 - 0.01) / 0.001
