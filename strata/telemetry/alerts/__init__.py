"""Alert rules evaluated inside strata, sent to the log and a webhook.

A request's outcome flows in once, when the gateway settles it; everything else runs on a
background task every `alerts.interval_s`:

    Outcome ──observe──▶ feed.RequestSeries     per-route latency, per-tenant cost, quota use
                           (windows.Slices of histogram.LogHistogram: window + baseline)
    pipeline registry ──▶ freshness.HistogramWindow
    every interval: rules (rules.LatencyRule, rules.CostRule, quota.QuotaRule,
                           freshness.FreshnessRule) ──Reading──▶ state.AlertStates
                      ──fired / resolved Alert──▶ sinks (sinks.LogSink, sinks.WebhookSink)

`service.AlertService` ties them together. The same rules, in PromQL, ship in
`deploy/prometheus/strata-alerts.yml`. This package knows no gateway types: the finisher
builds an `Outcome` and the quota rule reads a scope's budgets through a Protocol.
"""

from __future__ import annotations

from strata.telemetry.alerts.feed import Outcome
from strata.telemetry.alerts.service import AlertService
from strata.telemetry.alerts.state import Alert

__all__ = ["Alert", "AlertService", "Outcome"]
