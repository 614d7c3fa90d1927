"""The numbers a load run is judged by, computed from its `RequestRecord`s.

Latencies are in milliseconds; throughputs divide by the run's wall time (first send to last
answer). Token counts are the server's (`usage`). Failed requests count in `errors` and the
error rate, never in latencies or throughput.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from strata.bench.records import RequestRecord, percentile
from strata.bench.slo import Slo


@dataclass(frozen=True)
class Distribution:
    """Summary statistics of one latency, in milliseconds; NaN where there were no samples."""

    count: int
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float

    @classmethod
    def of_seconds(cls, values: Sequence[float]) -> Distribution:
        ms = [value * 1000 for value in values]
        mean = sum(ms) / len(ms) if ms else math.nan
        return cls(len(ms), mean, *(percentile(ms, q) for q in (50, 90, 95, 99)))


@dataclass(frozen=True)
class Summary:
    requests: int
    succeeded: int
    duration_s: float
    ttft_ms: Distribution
    itl_ms: Distribution  # every gap between streamed chunks
    tpot_ms: Distribution  # each request's mean time per output token after the first
    e2e_ms: Distribution
    prompt_tokens: int
    output_tokens: int
    slo_met: int | None = None  # None: no SLO given
    errors: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)  # one message per kind

    @property
    def failed(self) -> int:
        return self.requests - self.succeeded

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    @property
    def request_throughput(self) -> float:
        return self._per_second(self.succeeded)

    @property
    def output_throughput(self) -> float:
        return self._per_second(self.output_tokens)

    @property
    def total_throughput(self) -> float:
        return self._per_second(self.prompt_tokens + self.output_tokens)

    @property
    def goodput(self) -> float | None:
        """Requests per second that met the SLO."""
        return None if self.slo_met is None else self._per_second(self.slo_met)

    def _per_second(self, count: int) -> float:
        return count / self.duration_s if self.duration_s > 0 else math.nan


def summarize(records: Sequence[RequestRecord], duration_s: float, slo: Slo | None) -> Summary:
    good = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    return Summary(
        requests=len(records),
        succeeded=len(good),
        duration_s=duration_s,
        ttft_ms=Distribution.of_seconds(_present(r.ttft for r in good)),
        itl_ms=Distribution.of_seconds([gap for r in good for gap in r.itls]),
        tpot_ms=Distribution.of_seconds(_present(r.mean_itl for r in good)),
        e2e_ms=Distribution.of_seconds(_present(r.e2e for r in good)),
        prompt_tokens=sum(r.prompt_tokens for r in good),
        output_tokens=sum(r.output_tokens for r in good),
        slo_met=None if slo is None else sum(slo.met_by(r) for r in good),
        errors=dict(Counter(r.error or "unfinished" for r in failed)),
        error_examples=_examples(failed),
    )


def _present(values: Iterable[float | None]) -> list[float]:
    return [value for value in values if value is not None]


def _examples(failed: Sequence[RequestRecord]) -> dict[str, str]:
    examples: dict[str, str] = {}
    for record in failed:
        examples.setdefault(record.error or "unfinished", record.error_detail or "")
    return examples
