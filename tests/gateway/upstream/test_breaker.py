from __future__ import annotations

from strata.gateway.upstream.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_consecutive_failures_open_it_and_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(3, 10.0, Clock())
    for _ in range(2):
        assert breaker.acquire()
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allows() and not breaker.acquire()


def test_after_the_reset_time_one_trial_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.record_failure()
    clock.now += 4
    assert breaker.retry_in() == 6.0
    clock.now += 6
    assert breaker.state == "half_open"
    assert breaker.acquire()
    assert not breaker.acquire()  # only one trial at a time
    breaker.record_failure()
    assert breaker.state == "open" and breaker.retry_in() == 10.0
    clock.now += 10
    assert breaker.acquire()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.acquire() and breaker.acquire()


def test_a_trial_without_a_verdict_lets_the_next_one_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 1.0, clock)
    breaker.record_failure()
    clock.now += 1
    assert breaker.acquire()
    breaker.release()
    assert breaker.state == "half_open" and breaker.acquire()
