"""The alert rules running in the gateway: fed per request, evaluated on a background task.

    service = AlertService.from_settings(settings.alerts, PIPELINE_METRICS.registry)
    service.seed_usage(period_usage_rows)   # quota usage so far, from the ledger
    service.start()                         # evaluates every alerts.interval_s
    service.observe(outcome)                # the finisher, once per request (O(1))
    service.active()                        # firing alerts: GET /admin/alerts, the dashboard
    await service.aclose()

Everything runs on the gateway's event loop, so nothing is locked: `observe` adds to the
series, `evaluate` rolls them and reads them between requests (it yields to the loop every
few hundred series). The gauge `strata:alerts_firing{rule}` counts firing alerts per rule.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric

from strata.background import stop
from strata.config import AlertSettings
from strata.telemetry.alerts.feed import Outcome, RequestSeries
from strata.telemetry.alerts.freshness import FRESHNESS_METRIC, FreshnessRule, HistogramWindow
from strata.telemetry.alerts.quota import PeriodUsageLike, QuotaRule
from strata.telemetry.alerts.rules import E2E, TTFT, CostRule, LatencyRule, Rule
from strata.telemetry.alerts.sinks import LogSink, Sink, WebhookSink
from strata.telemetry.alerts.state import Alert, AlertStates, Reading, Timing
from strata.telemetry.engine_metrics import PREFIX

logger = logging.getLogger(__name__)
YIELD_EVERY = 256  # readings judged between two yields to the event loop

Clock = Callable[[], float]  # Unix seconds


class AlertService:
    """Rules, their alert states and the sinks told about every change."""

    def __init__(
        self,
        settings: AlertSettings,
        series: RequestSeries,
        rules: Sequence[Rule],
        sinks: Sequence[Sink],
        clock: Clock = time.time,
    ) -> None:
        self._interval_s = settings.interval_s
        self.series = series
        self.rules = tuple(rules)
        self._sinks = tuple(sinks)
        self._clock = clock
        self._states = AlertStates(
            Timing(settings.for_s, settings.resolve_after_s, settings.clear_ratio)
        )
        self._task: asyncio.Task[None] | None = None
        self.evaluations = 0  # passes completed

    @classmethod
    def from_settings(
        cls,
        settings: AlertSettings,
        freshness: CollectorRegistry | None = None,
        sinks: Sequence[Sink] | None = None,
        clock: Clock = time.time,
    ) -> AlertService:
        """The configured rules; `freshness`: the pipeline's registry (None: no such rule);
        `sinks` default to the log plus the webhook when `alerts.webhook.url` is set."""
        series = RequestSeries(settings.window_s, settings.baseline_s, clock)
        rules = build_rules(settings, series, freshness, clock())
        return cls(settings, series, rules, default_sinks(settings) if sinks is None else sinks,
                   clock)  # fmt: skip

    def observe(self, outcome: Outcome) -> None:
        """One finished request (the gateway's finisher calls this)."""
        self.series.observe(outcome)

    def seed_usage(self, entries: Iterable[PeriodUsageLike]) -> None:
        """Today's and this month's usage per user and tenant, from the ledger."""
        self.series.quotas.seed(entries, self._clock())

    async def evaluate(self) -> list[Alert]:
        """One pass over every rule; the alerts that fired or resolved, already sent."""
        now = self._clock()
        changed: list[Alert] = []
        for rule in self.rules:
            readings = await _gather(rule.readings(now))
            changed += self._states.update(rule.name, rule.severity, readings, now)
        for alert in changed:
            for sink in self._sinks:
                sink.send(alert)
        self.evaluations += 1
        return changed

    def active(self) -> list[Alert]:
        """Alerts firing now, oldest first."""
        return self._states.firing()

    def alerts(self) -> list[Alert]:
        """Alerts firing or pending (holding, not yet for `for_s`), oldest first."""
        return self._states.alerts()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        await stop(self._task)
        for sink in self._sinks:
            await sink.aclose()

    def collector(self) -> AlertsCollector:
        """The `strata:alerts_firing` gauge, for a metrics registry."""
        return AlertsCollector(self)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.evaluate()
            except Exception:  # a rule's bug must not end alerting: log it, try next time
                logger.exception("alert evaluation failed; next try in %s s", self._interval_s)


class AlertsCollector:
    """Firing alerts per rule, read at scrape time; every rule has a series (0 when quiet)."""

    def __init__(self, service: AlertService) -> None:
        self._service = service

    def describe(self) -> Iterable[Metric]:
        return [self._family()]

    def collect(self) -> Iterable[Metric]:
        family = self._family()
        firing = [a.rule for a in self._service.active()]
        for rule in self._service.rules:
            family.add_metric([rule.name], float(firing.count(rule.name)))
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(PREFIX + "alerts_firing", "Alerts firing now, by rule.",
                                 labels=["rule"])  # fmt: skip


def build_rules(
    settings: AlertSettings,
    series: RequestSeries,
    freshness: CollectorRegistry | None,
    now: float,
) -> list[Rule]:
    """The rules the settings turn on."""
    latency, least = settings.latency, settings.min_samples
    rules: list[Rule] = [
        LatencyRule(TTFT, series.ttft, _seconds(latency.ttft_p99_ms), latency.jump_factor,
                    latency.jump_min_ms / 1000, least),
        LatencyRule(E2E, series.e2e, _seconds(latency.e2e_p99_ms), latency.jump_factor,
                    latency.jump_min_ms / 1000, least),
        CostRule(series.cost, settings.cost.mad_factor, settings.cost.min_increase, least),
        QuotaRule(series.quotas, settings.quota.warn_fraction),
    ]  # fmt: skip
    slo_s = settings.freshness.slo_s
    if freshness is not None and slo_s is not None:
        window = HistogramWindow(freshness, FRESHNESS_METRIC, "source", settings.window_s, now)
        rules.append(FreshnessRule(window, slo_s))
    return rules


def default_sinks(settings: AlertSettings) -> list[Sink]:
    sinks: list[Sink] = [LogSink()]
    if settings.webhook.url is not None:
        sinks.append(WebhookSink(settings.webhook))
    return sinks


async def _gather(readings: Iterable[Reading]) -> list[Reading]:
    """All of a rule's readings, yielding to the event loop every `YIELD_EVERY`."""
    found = []
    for reading in readings:
        found.append(reading)
        if len(found) % YIELD_EVERY == 0:
            await asyncio.sleep(0)
    return found


def _seconds(ms: float | None) -> float | None:
    return None if ms is None else ms / 1000
