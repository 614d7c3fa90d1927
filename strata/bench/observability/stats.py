"""The statistics of `strata bench observability`, pure functions of measured values.

Overhead: throughput with instrumentation on divided by throughput with it off, one ratio per
interleaved pair; the median ratio, a percentile-bootstrap interval for it, and a verdict
against the allowed overhead. Accuracy: client and strata TTFTs matched by `x-request-id`, and
the percentiles of their differences. A histogram's quantile from two scrapes of `/metrics`.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from strata.bench.records import RequestRecord, percentile
from strata.telemetry.timeseries import Snapshot, bucket_increase, quantile

Verdict = Literal["holds", "inconclusive", "fails"]
BOOTSTRAP_RESAMPLES = 10_000


# -- overhead ------------------------------------------------------------------------------


def paired_ratios(treated: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """`treated[i] / baseline[i]` for each pair (e.g. tokens/s with instrumentation on / off)."""
    if len(treated) != len(baseline):
        raise ValueError(f"{len(treated)} treated runs but {len(baseline)} baseline runs")
    if any(b <= 0 for b in baseline):
        raise ValueError("a baseline run has no throughput; its pair has no ratio")
    return [t / b for t, b in zip(treated, baseline, strict=True)]


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def bootstrap_median_interval(
    values: Sequence[float],
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Interval:
    """Percentile-bootstrap interval of the median of `values`: resample them with
    replacement, take each resample's median, keep the middle `confidence` share."""
    if not values:
        raise ValueError("no values to bootstrap")
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    rng = random.Random(seed)
    n = len(values)
    medians = sorted(statistics.median(rng.choices(values, k=n)) for _ in range(resamples))
    tail = (1 - confidence) / 2
    return Interval(_at(medians, tail), _at(medians, 1 - tail))


def _at(ordered: Sequence[float], share: float) -> float:
    """The value `share` of the way through `ordered` (nearest rank, at least the first)."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


@dataclass(frozen=True)
class Overhead:
    """What switching something on costs in throughput, from paired runs."""

    ratios: tuple[float, ...]  # on / off, one per pair, in run order
    median_ratio: float
    interval: Interval  # of the median ratio
    max_overhead: float  # the allowed share, e.g. 0.02
    verdict: Verdict

    @property
    def median_overhead(self) -> float:
        """The share of throughput lost at the median ratio (negative: on was faster)."""
        return 1 - self.median_ratio

    @classmethod
    def of(cls, ratios: Sequence[float], max_overhead: float, seed: int = 0) -> Overhead:
        median = statistics.median(ratios)
        interval = bootstrap_median_interval(ratios, seed=seed)
        return cls(tuple(ratios), median, interval, max_overhead, verdict(interval, max_overhead))


def verdict(interval: Interval, max_overhead: float) -> Verdict:
    """`holds` when the whole interval costs less than `max_overhead`, `fails` when it all
    costs more, `inconclusive` when it straddles the bound (more pairs, or a quieter machine)."""
    floor = 1 - max_overhead
    if interval.low > floor:
        return "holds"
    if interval.high < floor:
        return "fails"
    return "inconclusive"


# -- accuracy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TtftPair:
    """One request's TTFT as the client and as strata measured it, in milliseconds."""

    request_id: str
    client_ms: float
    strata_ms: float
    engine_ms: float | None = None  # the engine's own, when its trace was received

    @property
    def difference_ms(self) -> float:
        return self.client_ms - self.strata_ms


@dataclass(frozen=True)
class Matched:
    pairs: tuple[TtftPair, ...]
    unmatched: int  # successful client requests with no strata TTFT to compare


def match_by_request_id(
    records: Iterable[RequestRecord],
    strata_ms: Mapping[str, float | None],
    engine_ms: Mapping[str, float] | None = None,
) -> Matched:
    """Pair each successful client record with strata's TTFT for its `x-request-id`."""
    pairs, unmatched = [], 0
    for record in records:
        if not record.ok or record.ttft is None:
            continue
        rid = record.request_id
        theirs = None if rid is None else strata_ms.get(rid)
        if rid is None or theirs is None:
            unmatched += 1
            continue
        engine = (engine_ms or {}).get(rid)
        pairs.append(TtftPair(rid, record.ttft * 1000, theirs, engine))
    return Matched(tuple(pairs), unmatched)


@dataclass(frozen=True)
class Agreement:
    """Client and strata TTFT side by side (milliseconds; NaN without pairs)."""

    pairs: int
    unmatched: int
    client_p50_ms: float
    strata_p50_ms: float
    engine_p50_ms: float | None  # None: no engine timings received
    difference_p50_ms: float  # client - strata, per request
    difference_p95_ms: float
    gateway_minus_engine_p50_ms: float | None  # strata (gateway) - engine, per request

    @classmethod
    def of(cls, matched: Matched) -> Agreement:
        pairs = matched.pairs
        engine = [(p.strata_ms, p.engine_ms) for p in pairs if p.engine_ms is not None]
        return cls(
            len(pairs), matched.unmatched,
            percentile([p.client_ms for p in pairs], 50),
            percentile([p.strata_ms for p in pairs], 50),
            percentile([e for _, e in engine], 50) if engine else None,
            percentile([p.difference_ms for p in pairs], 50),
            percentile([p.difference_ms for p in pairs], 95),
            percentile([s - e for s, e in engine], 50) if engine else None,
        )  # fmt: skip

    def within(self, bound_ms: float) -> bool:
        return abs(self.difference_p50_ms) <= bound_ms


# -- histograms from /metrics --------------------------------------------------------------


class Scrape:
    """One `/metrics` body, readable as a collector (`strata.telemetry.timeseries.Snapshot`)."""

    def __init__(self, text: str) -> None:
        self._families = list(text_string_to_metric_families(text))

    def collect(self) -> Iterable[Metric]:
        return self._families


def histogram_quantile(q: float, before: str, after: str, histogram: str) -> float | None:
    """The q-quantile of what `histogram` observed between two scrapes (interpolated inside a
    bucket, as Prometheus's `histogram_quantile` does); None when it observed nothing."""
    first, last = (Snapshot.take([Scrape(text)]) for text in (before, after))
    return quantile(q, bucket_increase(first.buckets(histogram), last.buckets(histogram)))


def histogram_count(scrape: str, histogram: str) -> float:
    """How many observations `histogram` holds in one scrape (0 when it is not there)."""
    return Snapshot.take([Scrape(scrape)]).total(histogram + "_count")
