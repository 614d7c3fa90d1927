"""The service end to end on an injected clock: outcomes in, alerts out to the sinks, the gauge,
and the background loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from strata.config import AlertSettings
from strata.gateway.principal import Limits
from strata.pipeline.metrics import PipelineMetrics
from strata.telemetry.alerts import Alert, AlertService, Outcome
from strata.telemetry.alerts.sinks import LogSink, WebhookSink
from strata.telemetry.alerts.state import Reading

T0 = 1_700_000_000.0
ROUTE = "/v1/chat/completions"
BASE = {
    "interval_s": 1.0, "window_s": 10.0, "baseline_s": 100.0, "for_s": 10.0,
    "resolve_after_s": 5.0, "min_samples": 20,
    "latency": {"ttft_p99_ms": None, "e2e_p99_ms": None, "jump_factor": 3.0, "jump_min_ms": 100},
}  # fmt: skip


def _settings(**changes: object) -> AlertSettings:
    return AlertSettings.model_validate({**BASE, **changes})


SETTINGS = _settings()


class _Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class _Recorder:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def send(self, alert: Alert) -> None:
        self.alerts.append(alert)

    async def aclose(self) -> None:
        return None

    def seen(self) -> list[tuple[str, str]]:
        return [(a.rule, a.state) for a in self.alerts]


def _outcome(
    latency_s: float = 0.05, cost: float = 1e-5, tenant: str = "acme", status: int = 200,
    limits: Limits | None = None,
) -> Outcome:  # fmt: skip
    return Outcome(ROUTE, status, tenant, f"{tenant}/alice", latency_s, latency_s / 2, cost, 20,
                   limits or Limits(), Limits())  # fmt: skip


def _service(clock: _Clock, sink: _Recorder, settings: AlertSettings = SETTINGS) -> AlertService:
    return AlertService.from_settings(settings, sinks=[sink], clock=clock)


async def _traffic(
    service: AlertService, clock: _Clock, seconds: int, latency_s: float = 0.05, **kw: Any
) -> list[Alert]:
    """10 requests a second for `seconds`, evaluating once a second (the background task's
    cadence), on the injected clock; the alerts that changed."""
    changed = []
    for _ in range(seconds):
        for _ in range(10):
            clock.now += 0.1
            service.observe(_outcome(latency_s, **kw))
        changed += await service.evaluate()
    return changed


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def sink() -> _Recorder:
    return _Recorder()


async def test_a_latency_spike_fires_once_and_resolves_once(clock: _Clock, sink: _Recorder) -> None:
    service = _service(clock, sink)
    assert await _traffic(service, clock, 60) == []
    spike_at = clock.now
    await _traffic(service, clock, 30, latency_s=0.5)
    assert sorted(sink.seen()) == [("e2e_p99", "firing"), ("ttft_p99", "firing")]
    for fired in sink.alerts:
        assert fired.fired_at is not None and fired.fired_at - spike_at <= SETTINGS.for_s + 2
        assert fired.labels == {"route": ROUTE} and fired.severity == "critical"
    assert {a.rule for a in service.active()} == {"e2e_p99", "ttft_p99"}
    await _traffic(service, clock, 60)
    assert sorted(sink.seen()) == [
        ("e2e_p99", "firing"), ("e2e_p99", "resolved"),
        ("ttft_p99", "firing"), ("ttft_p99", "resolved"),
    ]  # fmt: skip
    assert service.active() == [] and service.alerts() == []


async def test_a_tenants_cost_anomaly_fires_for_that_tenant_only(
    clock: _Clock, sink: _Recorder
) -> None:
    service = _service(clock, sink)
    for _ in range(60):  # two tenants, the same cost, interleaved
        await _traffic(service, clock, 1, tenant="acme")
        await _traffic(service, clock, 1, tenant="globex")
    for _ in range(20):
        await _traffic(service, clock, 1, tenant="acme", cost=1e-3)
        await _traffic(service, clock, 1, tenant="globex")
    assert sink.seen() == [("cost_anomaly", "firing")]
    assert sink.alerts[0].labels == {"tenant": "acme"}
    for _ in range(30):
        await _traffic(service, clock, 1, tenant="acme")
        await _traffic(service, clock, 1, tenant="globex")
    assert sink.seen() == [("cost_anomaly", "firing"), ("cost_anomaly", "resolved")]


async def test_failed_requests_count_towards_quotas_only(clock: _Clock, sink: _Recorder) -> None:
    service = _service(clock, sink, _settings(for_s=0.0))
    budget = Limits(daily_tokens=1000)
    for _ in range(45):  # 20 tokens each: 900 of 1000
        service.observe(_outcome(latency_s=30.0, status=502, limits=budget))
    assert service.series.e2e == {} and service.series.cost == {}
    changed = await service.evaluate()
    assert [(a.rule, a.state, a.labels["budget"]) for a in changed] == [
        ("quota_near", "firing", "daily_tokens")
    ]
    assert changed[0].labels == {"scope": "user", "id": "acme/alice", "budget": "daily_tokens"}


async def test_the_firing_gauge_counts_alerts_per_rule(clock: _Clock, sink: _Recorder) -> None:
    service = _service(clock, sink)
    registry = CollectorRegistry()
    registry.register(service.collector())
    await _traffic(service, clock, 60)
    await _traffic(service, clock, 30, latency_s=0.5)
    text = generate_latest(registry).decode()
    assert 'strata:alerts_firing{rule="e2e_p99"} 1.0' in text
    assert 'strata:alerts_firing{rule="cost_anomaly"} 0.0' in text
    assert 'strata:alerts_firing{rule="quota_near"} 0.0' in text


def test_the_settings_choose_the_rules_and_the_sinks() -> None:
    quiet = AlertService.from_settings(SETTINGS)
    assert [r.name for r in quiet.rules] == ["ttft_p99", "e2e_p99", "cost_anomaly", "quota_near"]
    assert [type(s) for s in quiet._sinks] == [LogSink]
    loud = AlertService.from_settings(
        _settings(webhook={"url": "http://127.0.0.1:9/hook"}), PipelineMetrics().registry
    )
    assert [r.name for r in loud.rules][-1] == "freshness_slo"
    assert [type(s) for s in loud._sinks] == [LogSink, WebhookSink]


class _Broken:
    name = "broken"
    severity = "warning"

    def __init__(self) -> None:
        self.calls = 0

    def readings(self, now: float) -> Iterator[Reading]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a bug in a rule")
        return iter(())


async def test_the_background_loop_survives_a_failing_pass(
    sink: _Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    rule = _Broken()
    service = AlertService(_settings(interval_s=0.01), _service(_Clock(), sink).series, [rule],
                           [sink])  # fmt: skip
    service.start()
    deadline = time.monotonic() + 10
    while service.evaluations < 3:
        assert time.monotonic() < deadline, "the loop stopped"
        await asyncio.sleep(0.01)
    await service.aclose()
    assert rule.calls >= 4
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1 and "alert evaluation failed" in failures[0].getMessage()
