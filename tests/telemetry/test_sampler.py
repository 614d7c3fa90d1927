"""The dashboard's ring buffer of points, sampled on a clock or by its background task."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import Metric

from strata.telemetry.sampler import Sampler
from strata.telemetry.timeseries import Lines, Rate, Selector


@dataclass
class FakeClock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def rate_sampler(capacity: int = 3) -> tuple[Sampler, Counter, FakeClock]:
    registry = CollectorRegistry()
    requests = Counter("strata:r", "r", registry=registry)
    clock = FakeClock()
    panels = [Lines("load", {"rps": Rate((Selector("strata:r_total"),))})]
    sampler = Sampler([registry], 2.0, capacity, panels, clock=clock, monotonic=clock)
    return sampler, requests, clock


def test_each_point_covers_the_time_since_the_previous_sample() -> None:
    sampler, requests, clock = rate_sampler()
    requests.inc(10)
    clock.now += 2.0
    first = sampler.sample()
    requests.inc(3)
    clock.now += 1.0
    second = sampler.sample()
    assert first.panels == {"load": {"rps": pytest.approx(5.0)}}
    assert second.panels == {"load": {"rps": pytest.approx(3.0)}}
    assert second.as_json() == {"t": second.t, "load": {"rps": pytest.approx(3.0)}}


def test_the_buffer_is_bounded_and_since_returns_what_is_newer() -> None:
    sampler, _, clock = rate_sampler(capacity=3)
    times = []
    for _ in range(5):
        clock.now += 0.0004  # sub-millisecond: `t` is rounded, and `since` must round-trip it
        clock.now += 1.0
        times.append(sampler.sample().t)
    assert [p.t for p in sampler.since()] == times[-3:]
    assert [p.t for p in sampler.since(times[3])] == times[4:]
    assert sampler.since(times[4]) == []


async def test_the_task_samples_every_interval_until_closed() -> None:
    registry = CollectorRegistry()
    sampler = Sampler([registry], 0.02, 100, [])
    sampler.start()
    await asyncio.sleep(0.2)
    await sampler.aclose()
    taken = len(sampler.since())
    assert taken >= 3
    await asyncio.sleep(0.1)
    assert len(sampler.since()) == taken
    await sampler.aclose()  # twice is fine


async def test_a_failing_collector_costs_points_not_the_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing = _Failing()
    sampler = Sampler([failing], 0.02, 100, [])
    failing.broken = True
    sampler.start()
    await asyncio.sleep(0.1)
    failing.broken = False
    await asyncio.sleep(0.1)
    await sampler.aclose()
    assert sampler.since(), "sampling resumed after the collector recovered"
    assert "dashboard sample failed" in caplog.text


class _Failing:
    broken = False

    def collect(self) -> list[Metric]:
        if self.broken:
            raise RuntimeError("collector down")
        return []
