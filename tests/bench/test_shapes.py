"""Load shapes: arrival schedules, the budget, and how many requests are open at once."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time

import pytest

from strata.bench.shapes import Budget, ConstantRate, FixedConcurrency, PoissonRate
from strata.errors import ConfigError


def first(n: int, shape: ConstantRate | PoissonRate) -> list[float]:
    return list(itertools.islice(shape.arrivals(), n))


def test_constant_rate_spaces_arrivals_evenly() -> None:
    assert first(5, ConstantRate(4.0)) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_poisson_gaps_average_one_over_the_rate() -> None:
    times = first(20_001, PoissonRate(8.0, seed=1))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert times[0] == 0.0 and min(gaps) >= 0
    assert statistics.mean(gaps) == pytest.approx(1 / 8, rel=0.03)
    assert statistics.stdev(gaps) == pytest.approx(1 / 8, rel=0.05)  # exponential: sd = mean


def test_poisson_arrivals_repeat_with_the_seed_and_differ_without() -> None:
    assert first(100, PoissonRate(5.0, seed=3)) == first(100, PoissonRate(5.0, seed=3))
    assert first(100, PoissonRate(5.0, seed=3)) != first(100, PoissonRate(5.0, seed=4))
    assert first(100, PoissonRate(5.0, seed=3)) != first(100, PoissonRate(5.0, seed=3, stream=1))


def test_budget_stops_at_the_request_count_or_the_duration() -> None:
    assert Budget(requests=3).allows(2, 1e9) and not Budget(requests=3).allows(3, 0.0)
    assert Budget(duration_s=2).allows(10**9, 1.9) and not Budget(duration_s=2).allows(0, 2.0)
    both = Budget(requests=5, duration_s=1)
    assert not both.allows(5, 0.0) and not both.allows(1, 1.0) and both.allows(4, 0.9)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Budget(),
        lambda: Budget(requests=0),
        lambda: Budget(duration_s=-1),
        lambda: FixedConcurrency(0),
        lambda: ConstantRate(0.0),
        lambda: PoissonRate(-1.0),
    ],
)
def test_unbounded_or_empty_loads_are_refused(make: object) -> None:
    with pytest.raises(ConfigError):
        make()  # type: ignore[operator]


class Recorder:
    """A `send` that takes `seconds` and notes when each request started and how many overlap."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: dict[int, float] = {}
        self.open = self.most_open = 0

    async def __call__(self, index: int) -> None:
        self.started[index] = time.perf_counter()
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        await asyncio.sleep(self.seconds)
        self.open -= 1


async def test_fixed_concurrency_keeps_exactly_n_requests_open() -> None:
    send = Recorder(0.01)
    await FixedConcurrency(3).drive(send, Budget(requests=10))
    assert sorted(send.started) == list(range(10)) and send.most_open == 3


async def test_fixed_concurrency_stops_sending_at_the_duration() -> None:
    send = Recorder(0.02)
    start = time.perf_counter()
    await FixedConcurrency(2).drive(send, Budget(duration_s=0.2))
    assert 0.2 <= time.perf_counter() - start < 0.6
    assert max(send.started.values()) - start < 0.2
    assert 4 <= len(send.started) <= 22


async def test_open_loop_sends_on_schedule_without_waiting_for_answers() -> None:
    send = Recorder(0.3)  # answers slower than the gap between sends
    start = time.perf_counter()
    await ConstantRate(50.0).drive(send, Budget(requests=6))
    offsets = [send.started[i] - start for i in range(6)]
    assert offsets == pytest.approx([i / 50 for i in range(6)], abs=0.03)
    assert send.most_open == 6


async def test_open_loop_duration_counts_planned_sends() -> None:
    send = Recorder(0.0)
    await ConstantRate(20.0).drive(send, Budget(duration_s=0.25))
    assert sorted(send.started) == list(range(5))  # sends at 0, 50, 100, 150, 200 ms
