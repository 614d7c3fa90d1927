"""The dashboard's numbers: percentiles from histogram bucket increases, rates from counter
increases, on known histograms and on the real engine and gateway registries."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

from strata.engine.outputs import EngineStats
from strata.telemetry.engine_metrics import LATENCY_BUCKETS_S, EngineMetrics
from strata.telemetry.gateway_metrics import GatewayMetrics, RequestUsage
from strata.telemetry.timeseries import (
    PANELS,
    Level,
    Quantile,
    Rate,
    RatePerLabel,
    Ratio,
    Selector,
    Snapshot,
    bucket_increase,
    increase,
    quantile,
)

INF = math.inf
# 10 observations up to 0.1 s, 20 in (0.1, 0.2], 10 in (0.2, 0.5], none above.
KNOWN = [(0.1, 10.0), (0.2, 30.0), (0.5, 40.0), (INF, 40.0)]


def test_quantiles_interpolate_inside_the_bucket_they_fall_in() -> None:
    assert quantile(0.25, KNOWN) == pytest.approx(0.1)  # rank 10: the first bucket's top
    assert quantile(0.5, KNOWN) == pytest.approx(0.15)  # rank 20: halfway through (0.1, 0.2]
    assert quantile(0.95, KNOWN) == pytest.approx(0.44)  # rank 38: 8/10 into (0.2, 0.5]
    assert quantile(0.99, KNOWN) == pytest.approx(0.488)
    assert quantile(1.0, KNOWN) == pytest.approx(0.5)


def test_a_quantile_in_the_overflow_bucket_is_the_highest_finite_bound() -> None:
    assert quantile(0.99, [(0.1, 1.0), (1.0, 2.0), (INF, 10.0)]) == 1.0


def test_no_observations_no_quantile() -> None:
    assert quantile(0.5, []) is None
    assert quantile(0.5, [(0.1, 0.0), (INF, 0.0)]) is None


def test_bucket_increase_keeps_only_the_interval_and_survives_a_reset() -> None:
    before = [(0.1, 10.0), (0.2, 30.0), (INF, 30.0)]
    after = [(0.1, 10.0), (0.2, 32.0), (INF, 35.0)]
    assert bucket_increase(before, after) == [(0.1, 0.0), (0.2, 2.0), (INF, 5.0)]
    reset = [(0.1, 1.0), (0.2, 1.0), (INF, 2.0)]
    assert bucket_increase(before, reset) == reset
    assert bucket_increase([], after) == after


def test_counter_increase_treats_a_drop_as_a_reset() -> None:
    assert increase(10.0, 15.0) == 5.0
    assert increase(10.0, 3.0) == 3.0


def test_percentiles_cover_only_the_interval_not_the_history() -> None:
    registry = CollectorRegistry()
    latency = Histogram("strata:x_seconds", "x", buckets=LATENCY_BUCKETS_S, registry=registry)
    for _ in range(1000):
        latency.observe(0.004)  # a fast history
    before = Snapshot.take([registry])
    for value in (0.21, 0.22, 0.23, 0.24, 0.25, 0.26, 0.27, 0.28, 0.29, 0.295):
        latency.observe(value)  # a slow interval: all in (0.2, 0.3]
    after = Snapshot.take([registry])
    assert Quantile(0.5, ("strata:x_seconds",)).value(before, after, 1.0) == pytest.approx(0.25)
    assert Quantile(0.99, ("strata:x_seconds",)).value(before, after, 1.0) == pytest.approx(0.299)
    assert Quantile(0.5, ("strata:x_seconds",)).value(after, after, 1.0) is None  # idle


def test_labelled_histograms_are_summed_and_the_first_present_family_is_used() -> None:
    registry = CollectorRegistry()
    by_route = Histogram("strata:b_seconds", "b", ["route"], buckets=(0.1, 1.0), registry=registry)
    before = Snapshot.take([registry])
    by_route.labels("a").observe(0.05)
    by_route.labels("b").observe(0.5)
    after = Snapshot.take([registry])
    assert after.buckets("strata:b_seconds") == [(0.1, 1.0), (1.0, 2.0), (INF, 2.0)]
    line = Quantile(0.5, ("strata:missing_seconds", "strata:b_seconds"))
    assert line.value(before, after, 1.0) == pytest.approx(0.1)
    assert Quantile(0.5, ("strata:missing_seconds",)).value(before, after, 1.0) is None


def test_rates_levels_and_ratios() -> None:
    registry = CollectorRegistry()
    tokens = Counter("strata:t", "t", ["kind"], registry=registry)
    running = Gauge("strata:running", "r", registry=registry)
    cache = _Cumulative(queries=100, hits=40)
    registry.register(cache)
    before = Snapshot.take([registry])
    tokens.labels("prompt").inc(30)
    tokens.labels("completion").inc(10)
    running.set(3)
    cache.queries, cache.hits = 150, 80
    after = Snapshot.take([registry])
    prompt = Selector("strata:t_total", (("kind", "prompt"),))
    assert Rate((prompt,)).value(before, after, 2.0) == pytest.approx(15.0)
    assert Rate((Selector("strata:t_total"),)).value(before, after, 2.0) == pytest.approx(20.0)
    assert Rate((Selector("strata:none_total"), prompt)).value(before, after, 2.0) == 15.0
    assert Rate((prompt,)).value(before, after, 0.0) is None
    assert Level(Selector("strata:running")).value(before, after, 2.0) == 3.0
    assert Level(Selector("strata:absent")).value(before, after, 2.0) is None
    hit_rate = Ratio(Selector("strata:hits_total"), Selector("strata:queries_total"))
    assert hit_rate.value(before, after, 2.0) == pytest.approx(40 / 50)
    assert hit_rate.value(after, after, 2.0) is None  # no lookups in the interval


def test_cost_per_tenant_is_a_rate_per_label_value() -> None:
    metrics = GatewayMetrics(["acme"])
    before = Snapshot.take([metrics.registry])
    metrics.request("/v1/chat/completions", 200, "acme", RequestUsage(10, 5, 0.02, 0.1, 0.01))
    metrics.request("/v1/chat/completions", 200, "shop1", RequestUsage(10, 5, 0.01, 0.1, 0.01))
    after = Snapshot.take([metrics.registry])
    panel = RatePerLabel("cost", "strata:gateway_cost_usd_total", "tenant", scale=3600.0)
    assert panel.measure(before, after, 10.0) == pytest.approx({"acme": 7.2, "other": 3.6})
    assert panel.measure(before, after, 0.0) == {}


def test_the_dashboard_panels_read_the_real_engine_and_gateway_registries() -> None:
    engine = EngineMetrics(_stats)
    gateway = GatewayMetrics(["acme"], lambda: [_Upstream()])
    registries = [engine.registry, gateway.registry]
    before = Snapshot.take(registries)
    engine.ttft.observe(0.03)
    engine.inter_token.observe(0.012)
    engine.generation_tokens.inc(40)
    gateway.request("/v1/chat/completions", 200, "acme", RequestUsage(10, 40, 0.5, 0.5, 0.04))
    after = Snapshot.take(registries)
    values = {p.name: p.measure(before, after, 4.0) for p in PANELS}
    assert values["ttft_s"]["p50"] == pytest.approx(0.025)  # the engine's, in (0.02, 0.03]
    assert values["itl_s"]["p99"] is not None
    assert values["tokens_per_s"]["generation"] == pytest.approx(10.0)  # the engine's counter
    assert values["requests"] == {"running": 2.0, "waiting": 1.0, "in_flight": 3.0}
    assert values["kv_cache"] == {"usage": 0.25, "prefix_hit_rate": None}
    assert values["cost_usd_per_h"] == pytest.approx({"acme": 450.0})
    assert values["freshness_s"] == {"p50": None, "p95": None, "p99": None}


def test_without_the_engine_the_gateway_histogram_and_tokens_stand_in() -> None:
    gateway = GatewayMetrics([])
    before = Snapshot.take([gateway.registry])
    gateway.request("/v1/chat/completions", 200, "acme", RequestUsage(10, 40, 0.0, 0.5, 0.004))
    after = Snapshot.take([gateway.registry])
    values = {p.name: p.measure(before, after, 2.0) for p in PANELS}
    assert values["ttft_s"]["p50"] == pytest.approx(0.00375)  # mid (0.0025, 0.005]
    assert values["itl_s"]["p50"] is None
    assert values["tokens_per_s"] == {"prompt": 5.0, "generation": 20.0}
    assert values["requests"]["running"] is None


@dataclass(frozen=True)
class _Upstream:
    name: str = "engine"
    tier: str = "on-demand"
    available: bool = True
    in_flight: int = 3


class _Cumulative:
    """Prefix-cache counters as the engine reports them: read at collect time."""

    def __init__(self, queries: int, hits: int) -> None:
        self.queries, self.hits = queries, hits

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily("strata:queries", "q", value=self.queries)
        yield CounterMetricFamily("strata:hits", "h", value=self.hits)


def _stats() -> EngineStats:
    return EngineStats(
        num_running=2,
        num_waiting=1,
        kv_blocks_total=8,
        kv_blocks_used=2,
        prefix_queries=0,
        prefix_hits=0,
        num_preemptions=0,
        num_steps=5,
        last_batch_size=2,
        prompt_tokens=0,
        generation_tokens=0,
        batch_cap=8,
        token_budget=128,
        batch_window_s=0.0,
        slo_attainment=None,
        num_shed=0,
    )
