"""What the dashboard plots: points computed from two snapshots of the Prometheus collectors.

A `Snapshot` holds every sample of some registries at one moment. A `Panel` turns the snapshot
taken at the start of an interval and the one at its end into that interval's values: p50/p95/p99
from the histogram buckets' increase over the interval (the way Prometheus's
`histogram_quantile(rate(...))` does), per-second rates from counter increases, gauges as read at
the end. `PANELS` is the dashboard's layout. This module reads metric names only; it knows no
engine, gateway or pipeline types, and keeps no history (`strata.telemetry.sampler` does).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import Metric

LabelSet = tuple[tuple[str, str], ...]  # sorted (name, value) pairs
Bucket = tuple[float, float]  # (upper bound, cumulative count), the last bound +Inf
Values = dict[str, float | None]  # one panel's lines at one point; None: nothing to show


class Collector(Protocol):
    """A Prometheus registry (or any collector): what a snapshot reads."""

    def collect(self) -> Iterable[Metric]: ...


class Snapshot:
    """Every sample of some collectors at one moment, by sample name and label set."""

    def __init__(self, samples: Mapping[str, Mapping[LabelSet, float]]) -> None:
        self._samples = samples

    @classmethod
    def take(cls, collectors: Iterable[Collector]) -> Snapshot:
        samples: defaultdict[str, dict[LabelSet, float]] = defaultdict(dict)
        for collector in collectors:
            for metric in collector.collect():
                for s in metric.samples:
                    if not s.name.endswith("_created"):  # creation times are not values
                        samples[s.name][tuple(sorted(s.labels.items()))] = float(s.value)
        return cls(samples)

    def has(self, name: str) -> bool:
        return name in self._samples

    def total(self, name: str, match: LabelSet = ()) -> float:
        """The sum of `name` over the label sets that contain every pair in `match`."""
        return sum(self.by_label(name, "", match).values())

    def by_label(self, name: str, label: str, match: LabelSet = ()) -> dict[str, float]:
        """`name` summed per value of `label` (all under "" when `label` is "")."""
        sums: defaultdict[str, float] = defaultdict(float)
        for labels, value in self._samples.get(name, {}).items():
            if set(match) <= set(labels):
                sums[dict(labels).get(label, "")] += value
        return dict(sums)

    def buckets(self, histogram: str) -> list[Bucket]:
        """The histogram's cumulative buckets, summed over its other labels, by bound."""
        counts = self.by_label(histogram + "_bucket", "le")
        return sorted((float(bound), count) for bound, count in counts.items())


def increase(before: float, after: float) -> float:
    """How much a counter grew; one that went down was reset, so all it holds is new."""
    return after if after < before else after - before


def bucket_increase(before: Sequence[Bucket], after: Sequence[Bucket]) -> list[Bucket]:
    """The observations made between two readings of the same cumulative buckets."""
    if not before or not after or after[-1][1] < before[-1][1]:  # new, or reset
        return list(after)
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in after]


def quantile(q: float, buckets: Sequence[Bucket]) -> float | None:
    """The q-quantile (0 < q <= 1) of the observations in cumulative `buckets`, interpolated
    linearly inside the bucket it falls in; the highest finite bound when it falls in +Inf.
    None when there are no observations."""
    assert 0 < q <= 1, q
    total = buckets[-1][1] if buckets else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower  # unreachable for well-formed buckets (the +Inf one holds the total)


@dataclass(frozen=True)
class Selector:
    """A counter or gauge sample by name, with the labels it must carry."""

    name: str
    match: LabelSet = ()

    def read(self, snapshot: Snapshot) -> float:
        return snapshot.total(self.name, self.match)

    def increase(self, before: Snapshot, after: Snapshot) -> float:
        return increase(self.read(before), self.read(after))


class Line(Protocol):
    """One plotted value per interval, from the snapshots at its start and end."""

    def value(self, before: Snapshot, after: Snapshot, dt_s: float) -> float | None: ...


@dataclass(frozen=True)
class Quantile:
    """A percentile over the interval, from the first of `histograms` that exists."""

    q: float
    histograms: tuple[str, ...]

    def value(self, before: Snapshot, after: Snapshot, dt_s: float) -> float | None:
        name = next((h for h in self.histograms if after.has(h + "_bucket")), None)
        if name is None:
            return None
        return quantile(self.q, bucket_increase(before.buckets(name), after.buckets(name)))


@dataclass(frozen=True)
class Rate:
    """Per-second increase of the first of `counters` that exists."""

    counters: tuple[Selector, ...]

    def value(self, before: Snapshot, after: Snapshot, dt_s: float) -> float | None:
        counter = next((c for c in self.counters if after.has(c.name)), None)
        if counter is None or dt_s <= 0:
            return None
        return counter.increase(before, after) / dt_s


@dataclass(frozen=True)
class Level:
    """A gauge as read at the end of the interval."""

    gauge: Selector

    def value(self, before: Snapshot, after: Snapshot, dt_s: float) -> float | None:
        if not after.has(self.gauge.name):
            return None
        return self.gauge.read(after)


@dataclass(frozen=True)
class Ratio:
    """Increase of one counter over the increase of another (e.g. hits per lookup)."""

    part: Selector
    whole: Selector

    def value(self, before: Snapshot, after: Snapshot, dt_s: float) -> float | None:
        whole = self.whole.increase(before, after)
        if whole <= 0:
            return None
        return self.part.increase(before, after) / whole


class Panel(Protocol):
    """One plot: its name and the values of its lines for one interval."""

    @property
    def name(self) -> str: ...

    def measure(self, before: Snapshot, after: Snapshot, dt_s: float) -> Values: ...


@dataclass(frozen=True)
class Lines:
    """A plot with a fixed set of named lines."""

    name: str
    lines: Mapping[str, Line]

    def measure(self, before: Snapshot, after: Snapshot, dt_s: float) -> Values:
        return {label: line.value(before, after, dt_s) for label, line in self.lines.items()}


@dataclass(frozen=True)
class RatePerLabel:
    """A plot with one line per value of a label (bounded, e.g. allow-listed tenants): the
    counter's per-second increase times `scale` (3600 for per-hour)."""

    name: str
    counter: str
    label: str
    scale: float = 1.0

    def measure(self, before: Snapshot, after: Snapshot, dt_s: float) -> Values:
        if dt_s <= 0:
            return {}
        earlier = before.by_label(self.counter, self.label)
        return {
            key: increase(earlier.get(key, 0.0), now) / dt_s * self.scale
            for key, now in sorted(after.by_label(self.counter, self.label).items())
        }


def percentiles(*histograms: str) -> dict[str, Line]:
    return {f"p{round(q * 100)}": Quantile(q, histograms) for q in (0.5, 0.95, 0.99)}


def _tokens(engine_counter: str, gateway_kind: str) -> Rate:
    """Engine token counts when the engine runs in this process, else what the gateway saw."""
    gateway = Selector("strata:gateway_tokens_total", (("kind", gateway_kind),))
    return Rate((Selector(engine_counter), gateway))


# The dashboard's plots, in page order. TTFT prefers the engine's histogram when it runs here
# (the gateway's own covers any upstream); inter-token latency exists only in the engine's.
PANELS: tuple[Panel, ...] = (
    Lines("ttft_s", percentiles(
        "strata:time_to_first_token_seconds", "strata:gateway_time_to_first_token_seconds")),
    Lines("itl_s", percentiles("strata:inter_token_latency_seconds")),
    Lines("tokens_per_s", {
        "prompt": _tokens("strata:prompt_tokens_total", "prompt"),
        "generation": _tokens("strata:generation_tokens_total", "completion"),
    }),
    Lines("requests", {
        "running": Level(Selector("strata:num_requests_running")),
        "waiting": Level(Selector("strata:num_requests_waiting")),
        "in_flight": Level(Selector("strata:upstream_in_flight")),
    }),
    Lines("kv_cache", {
        "usage": Level(Selector("strata:kv_cache_usage_perc")),
        "prefix_hit_rate": Ratio(
            Selector("strata:prefix_cache_hits_total"),
            Selector("strata:prefix_cache_queries_total"),
        ),
    }),
    RatePerLabel("cost_usd_per_h", "strata:gateway_cost_usd_total", "tenant", scale=3600.0),
    Lines("freshness_s", percentiles("strata:pipeline_freshness_seconds")),
)  # fmt: skip
