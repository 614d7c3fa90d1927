"""Pipeline freshness against its SLO, read from the pipeline's own Prometheus histogram.

The pipeline observes `strata:pipeline_freshness_seconds{source}` for every transaction it
makes searchable (in its own threads). `HistogramWindow` snapshots the cumulative bucket
counts at each evaluation and subtracts the snapshot from `window_s` ago, exactly as
Prometheus's `rate(..._bucket[window])` would, so this rule and the shipped Prometheus rule
agree. Quantiles are interpolated inside a bucket the way `histogram_quantile` does. A source
that applies nothing in the window has no reading: a stalled source shows as slot lag
(`strata:pipeline_slot_lag_bytes`), not here.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry

from strata.telemetry.alerts.state import AlertKey, Reading

RULE = "freshness_slo"
FRESHNESS_METRIC = "strata:pipeline_freshness_seconds"

Buckets = tuple[tuple[float, float], ...]  # (upper bound, cumulative count), ascending bounds


class HistogramWindow:
    """A labelled Prometheus histogram's observations over the last `window_s`, per label."""

    def __init__(
        self, registry: CollectorRegistry, name: str, label: str, window_s: float, now: float
    ) -> None:
        self._registry = registry
        self._name = name
        self._label = label
        self._window_s = window_s
        # The snapshot at start is the first reference: what was counted before does not count.
        self._history: deque[tuple[float, dict[str, Buckets]]] = deque([(now, self._snapshot())])

    def quantiles(self, q: float, now: float) -> dict[str, tuple[float, float]]:
        """(q-quantile, observations) per label value, over the window ending at `now`."""
        latest = self._snapshot()
        self._history.append((now, latest))
        while len(self._history) > 1 and self._history[1][0] <= now - self._window_s:
            self._history.popleft()  # keep one snapshot at or before the window's start
        reference = self._history[0][1]
        found = {}
        for value, buckets in latest.items():
            delta = _minus(buckets, reference.get(value, ()))
            count = delta[-1][1] if delta else 0.0
            if count > 0:
                found[value] = (_bucket_quantile(q, delta), count)
        return found

    def _snapshot(self) -> dict[str, Buckets]:
        by_value: dict[str, list[tuple[float, float]]] = {}
        for family in self._registry.collect():
            if family.name != self._name:
                continue
            for sample in family.samples:
                if sample.name == self._name + "_bucket":
                    bound = float(sample.labels["le"])
                    by_value.setdefault(sample.labels[self._label], []).append(
                        (bound, sample.value)
                    )
        return {value: tuple(sorted(pairs)) for value, pairs in by_value.items()}


class FreshnessRule:
    """Fires for a source whose p99 freshness over the window exceeds the SLO."""

    name = RULE
    severity = "warning"

    def __init__(self, window: HistogramWindow, slo_s: float) -> None:
        self._window = window
        self._slo_s = slo_s

    def readings(self, now: float) -> Iterator[Reading]:
        for source, (p99, count) in self._window.quantiles(0.99, now).items():
            message = (f"pipeline source {source}: p99 freshness {p99:.2f} s is over the SLO "
                       f"of {self._slo_s:g} s, {count:.0f} transactions")  # fmt: skip
            yield Reading(AlertKey.of(RULE, source=source), p99, self._slo_s, message)


def _minus(now: Buckets, before: Buckets) -> Buckets:
    old: Mapping[float, float] = dict(before)
    return tuple((bound, count - old.get(bound, 0.0)) for bound, count in now)


def _bucket_quantile(q: float, buckets: Buckets) -> float:
    """`histogram_quantile`: linear inside the bucket holding rank q x total; the highest
    finite bound when that is the +Inf bucket."""
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (cumulative - below)
        lower, below = bound, cumulative
    return lower
