"""Latency objectives: which requests count toward goodput, and whether a load level holds.

A request *meets* the SLO when it succeeded and its own TTFT, mean inter-token latency (TPOT)
and end-to-end latency are within every threshold given. A run *holds* the SLO when the p95 of
each given latency is within its threshold (ITL: over every inter-token gap) and at most
`max_error_rate` of its requests failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strata.bench.records import RequestRecord
from strata.errors import ConfigError

if TYPE_CHECKING:
    from strata.bench.summary import Summary


@dataclass(frozen=True)
class Slo:
    ttft_ms: float | None = None
    itl_ms: float | None = None
    e2e_ms: float | None = None
    max_error_rate: float = 0.01

    def __post_init__(self) -> None:
        limits = (self.ttft_ms, self.itl_ms, self.e2e_ms)
        if all(limit is None for limit in limits):
            raise ConfigError("an SLO needs --slo-ttft-ms, --slo-itl-ms or --slo-e2e-ms")
        if any(limit is not None and not limit > 0 for limit in limits):
            raise ConfigError("SLO thresholds must be > 0 milliseconds")

    def met_by(self, record: RequestRecord) -> bool:
        if not record.ok:
            return False
        return (
            _within(record.ttft, self.ttft_ms)
            and _within(record.mean_itl, self.itl_ms)
            and _within(record.e2e, self.e2e_ms)
        )

    def held_by(self, summary: Summary) -> bool:
        if summary.succeeded == 0 or summary.error_rate > self.max_error_rate:
            return False
        return (
            _p95_within(summary.ttft_ms.p95, self.ttft_ms)
            and _p95_within(summary.itl_ms.p95, self.itl_ms)
            and _p95_within(summary.e2e_ms.p95, self.e2e_ms)
        )

    def describe(self) -> dict[str, Any]:
        return {
            "ttft_ms": self.ttft_ms,
            "itl_ms": self.itl_ms,
            "e2e_ms": self.e2e_ms,
            "max_error_rate": self.max_error_rate,
        }


def _within(seconds: float | None, limit_ms: float | None) -> bool:
    # A latency the request does not have (one output token has no ITL) cannot break the SLO.
    return limit_ms is None or seconds is None or seconds * 1000 <= limit_ms


def _p95_within(p95_ms: float, limit_ms: float | None) -> bool:
    return limit_ms is None or math.isnan(p95_ms) or p95_ms <= limit_ms
