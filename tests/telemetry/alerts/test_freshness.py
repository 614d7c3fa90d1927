from __future__ import annotations

import pytest

from strata.pipeline.metrics import PipelineMetrics
from strata.telemetry.alerts.freshness import (
    FRESHNESS_METRIC,
    RULE,
    FreshnessRule,
    HistogramWindow,
)
from strata.telemetry.alerts.state import AlertKey

WINDOW_S = 60.0


def _window(metrics: PipelineMetrics, now: float = 0.0) -> HistogramWindow:
    return HistogramWindow(metrics.registry, FRESHNESS_METRIC, "source", WINDOW_S, now)


def test_quantiles_interpolate_inside_a_bucket_as_prometheus_does() -> None:
    metrics = PipelineMetrics()
    window = _window(metrics)
    for _ in range(100):
        metrics.freshness.labels("tickets").observe(0.6)  # bucket (0.5, 0.75]
    p50, count = window.quantiles(0.5, 1.0)["tickets"]
    assert count == 100 and p50 == pytest.approx(0.5 + 0.25 * 0.5)


def test_only_observations_inside_the_window_count() -> None:
    metrics = PipelineMetrics()
    metrics.freshness.labels("tickets").observe(100.0)  # before the rule started
    window = _window(metrics)
    metrics.freshness.labels("tickets").observe(20.0)
    assert window.quantiles(0.99, 10.0)["tickets"][1] == 1
    metrics.freshness.labels("tickets").observe(0.1)
    assert window.quantiles(0.99, 50.0)["tickets"][1] == 2
    # 70 s: the first snapshot (0 s) is before the window; the one at 10 s (one sample) is kept
    assert window.quantiles(0.99, 70.0)["tickets"][1] == 1
    assert window.quantiles(0.99, 200.0) == {}


def test_past_the_last_finite_bucket_it_reports_that_bound() -> None:
    metrics = PipelineMetrics()
    window = _window(metrics)
    metrics.freshness.labels("slow").observe(10_000.0)
    assert window.quantiles(0.99, 1.0)["slow"][0] == 300.0


def test_a_source_over_its_slo_reads_above_the_threshold() -> None:
    metrics = PipelineMetrics()
    rule = FreshnessRule(_window(metrics), slo_s=5.0)
    for _ in range(50):
        metrics.freshness.labels("fast").observe(0.2)
        metrics.freshness.labels("slow").observe(20.0)
    readings = {r.key: r for r in rule.readings(1.0)}
    slow = readings[AlertKey.of(RULE, source="slow")]
    fast = readings[AlertKey.of(RULE, source="fast")]
    assert slow.value > 5.0 == slow.threshold and fast.value < 5.0
    assert slow.message.startswith("pipeline source slow: p99 freshness")
