from __future__ import annotations

import threading

import pytest

from strata.errors import RateLimitError
from strata.gateway.limits import Ask, MemoryLimiter, Usage
from strata.gateway.limits.meters import CONCURRENT, TPM

from . import FakeClock, scope


def test_threads_racing_admit_exactly_the_room() -> None:
    limiter = MemoryLimiter()
    scopes = [scope("tenant", "acme", daily_tokens=1000, concurrent=30)]
    admitted: list[int] = []
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(50):
            try:
                limiter.reserve_now(scopes, Ask(tokens=40))
                admitted.append(1)
            except RateLimitError:
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 25


def test_used_reports_the_current_window_only() -> None:
    clock = FakeClock()
    limiter = MemoryLimiter(clock)
    key = scope(tpm=1000, concurrent=5)
    reservation = limiter.reserve_now([key], Ask(tokens=300))
    assert (limiter.used(key, TPM), limiter.used(key, CONCURRENT)) == (300, 1)
    limiter.give_back(reservation, Usage(tokens=100))
    assert (limiter.used(key, TPM), limiter.used(key, CONCURRENT)) == (100, 0)
    clock.to_next_minute()
    assert limiter.used(key, TPM) == 0


def test_a_rejected_reserve_takes_nothing_from_earlier_scopes() -> None:
    limiter = MemoryLimiter()
    key, tenant = scope("key", "k", tpm=1000, concurrent=3), scope("tenant", "t", rpm=1)
    limiter.reserve_now([key, tenant], Ask(tokens=10))
    with pytest.raises(RateLimitError):
        limiter.reserve_now([key, tenant], Ask(tokens=10))
    assert (limiter.used(key, TPM), limiter.used(key, CONCURRENT)) == (10, 1)
