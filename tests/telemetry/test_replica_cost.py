"""Replica and idle time and their cost per self-hosted upstream, read at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from strata.engine.accounting import ReplicaTime
from strata.telemetry.replica_cost import ReplicaCostCollector, ReplicaSource


def test_each_upstreams_replica_and_idle_seconds_and_their_cost_are_counters() -> None:
    clock = [ReplicaTime(100.0, 60.0, 40.0, 0.0)]
    registry = CollectorRegistry()
    source = ReplicaSource("engine", 7.2 / 3600, lambda: clock[0])
    registry.register(ReplicaCostCollector([source]))
    assert (
        registry.get_sample_value("strata:upstream_idle_seconds_total", {"upstream": "engine"})
        == 40.0
    )
    assert (
        registry.get_sample_value("strata:upstream_idle_cost_usd_total", {"upstream": "engine"})
        == 40.0 * 0.002
    )
    clock[0] = ReplicaTime(200.0, 60.0, 140.0, 0.0)  # read fresh at every scrape
    text = generate_latest(registry).decode()
    assert 'strata:upstream_replica_seconds_total{upstream="engine"} 200.0' in text
    assert 'strata:upstream_replica_cost_usd_total{upstream="engine"} 0.4' in text
    assert "# TYPE strata:upstream_idle_cost_usd_total counter" in text
