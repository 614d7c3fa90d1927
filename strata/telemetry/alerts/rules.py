"""The request rules: p99 latency per route, and cost per request per tenant.

A rule is a small object with a `name`, a `severity` and `readings(now)`: one `Reading` per
series it can judge now (enough samples), none for the others. The state machine in
`state.py` decides what fires; rules only measure.

Both rules compare the last `window_s` with the baseline before it, in ways a spike cannot
quickly make its own baseline: the latency baseline is the median of the baseline's per-slice
p99s (one slice holding a spike does not move it), the cost baseline is the median and the
median absolute deviation (MAD) of every request's cost in the baseline.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Protocol

from strata.telemetry.alerts.histogram import MAD_TO_SIGMA
from strata.telemetry.alerts.state import AlertKey, Reading
from strata.telemetry.alerts.windows import Slices

TTFT = "ttft_p99"
E2E = "e2e_p99"
COST = "cost_anomaly"


class Rule(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def severity(self) -> str: ...
    def readings(self, now: float) -> Iterator[Reading]:
        """The series this rule can judge at `now`; those it cannot are left out (clear)."""
        ...


def rolled(series: MutableMapping[str, Slices], now: float) -> Iterator[tuple[str, Slices]]:
    """Each series rolled to `now`; series with nothing left in them are dropped."""
    for name, slices in list(series.items()):
        slices.roll(now)
        if slices.empty:
            del series[name]
        else:
            yield name, slices


class LatencyRule:
    """p99 latency per route over a fixed threshold, or over `jump_factor` x its baseline."""

    severity = "critical"

    def __init__(
        self,
        name: str,
        series: MutableMapping[str, Slices],
        fixed_s: float | None,
        jump_factor: float | None,
        jump_min_s: float,
        min_samples: int,
    ) -> None:
        self.name = name
        self._what = "TTFT" if name == TTFT else "end-to-end latency"
        self._series = series
        self._fixed_s = fixed_s
        self._jump_factor = jump_factor
        self._jump_min_s = jump_min_s
        self._min_samples = min_samples

    def readings(self, now: float) -> Iterator[Reading]:
        for route, slices in rolled(self._series, now):
            reading = self._judge(route, slices)
            if reading is not None:
                yield reading

    def _judge(self, route: str, slices: Slices) -> Reading | None:
        if slices.current.total < self._min_samples:
            return None
        p99 = slices.current.quantile(0.99)
        assert p99 is not None
        limits = self._thresholds(slices)
        if not limits:
            return None
        threshold, why = min(limits)
        message = (f"p99 {self._what} on {route} is {_ms(p99)} over {_ms(threshold)} ({why}), "
                   f"{slices.current.total} requests")  # fmt: skip
        return Reading(AlertKey.of(self.name, route=route), p99, threshold, message)

    def _thresholds(self, slices: Slices) -> list[tuple[float, str]]:
        limits = []
        if self._fixed_s is not None:
            limits.append((self._fixed_s, "fixed threshold"))
        baseline = self._baseline_p99(slices)
        if self._jump_factor is not None and baseline is not None:
            jump = max(self._jump_factor * baseline, self._jump_min_s)
            limits.append((jump, f"{self._jump_factor:g}x its baseline p99 of {_ms(baseline)}"))
        return limits

    def _baseline_p99(self, slices: Slices) -> float | None:
        """The median of the baseline slices' p99s; None with too few samples."""
        if slices.baseline.total < self._min_samples:
            return None
        parts = (part.quantile(0.99) for part in slices.baseline_parts())
        p99s = sorted(p for p in parts if p is not None)
        return p99s[(len(p99s) - 1) // 2] if p99s else None


class CostRule:
    """A tenant's median cost per request over the window against its baseline's median and
    MAD: it fires above median + `mad_factor` x 1.4826 x MAD, and at least `min_increase`
    above the median (so a tenant whose every request costs the same, MAD 0, can vary a
    little)."""

    name = COST
    severity = "warning"

    def __init__(
        self,
        series: MutableMapping[str, Slices],
        mad_factor: float,
        min_increase: float,
        min_samples: int,
    ) -> None:
        self._series = series
        self._mad_factor = mad_factor
        self._min_increase = min_increase
        self._min_samples = min_samples

    def readings(self, now: float) -> Iterator[Reading]:
        for tenant, slices in rolled(self._series, now):
            current, baseline = slices.current, slices.baseline
            if min(current.total, baseline.total) < self._min_samples:
                continue
            median, value = baseline.quantile(0.5), current.quantile(0.5)
            assert median is not None and value is not None
            mad = baseline.mad(median)
            threshold = max(median + self._mad_factor * MAD_TO_SIGMA * mad,
                            median * (1 + self._min_increase))  # fmt: skip
            message = (f"tenant {tenant}: median cost per request ${value:.6g} is over "
                       f"${threshold:.6g} (baseline median ${median:.6g}, MAD ${mad:.3g}), "
                       f"{current.total} requests")  # fmt: skip
            yield Reading(AlertKey.of(COST, tenant=tenant), value, threshold, message)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
