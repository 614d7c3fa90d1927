"""What the gateway reports about each finished request, and the series the rules read.

`RequestSeries.observe` is the one call on the request path: a few dictionary look-ups and
additions, O(1), no lock and no I/O. Latency is kept per route, cost per tenant (tenants are
created by admins, so their number is bounded), quota usage per user and tenant that has a
budget. Failed requests count towards quotas only: an error's latency or cost says nothing
about how requests are served.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from strata.telemetry.alerts.quota import QuotaLimits, QuotaUsage
from strata.telemetry.alerts.windows import Slices


class Outcome(NamedTuple):
    """One finished request, as the gateway's finisher settled it (a NamedTuple: built once
    per request, it must be cheap)."""

    route: str
    status: int
    tenant: str
    user: str  # the user's scope id, "tenant/user"
    e2e_s: float
    ttft_s: float | None  # None unless streamed text arrived
    cost_usd: float
    tokens: int  # prompt + completion
    user_limits: QuotaLimits
    tenant_limits: QuotaLimits


class RequestSeries:
    """Per-route latency, per-tenant cost and per-scope quota usage, fed one outcome at a time."""

    def __init__(
        self, window_s: float, baseline_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._window_s = window_s
        self._baseline_s = baseline_s
        self._clock = clock
        self.e2e: dict[str, Slices] = {}  # by route
        self.ttft: dict[str, Slices] = {}  # by route
        self.cost: dict[str, Slices] = {}  # by tenant
        self.quotas = QuotaUsage()

    def observe(self, outcome: Outcome) -> None:
        now = self._clock()
        self.quotas.add("user", outcome.user, outcome.user_limits, outcome, now)
        self.quotas.add("tenant", outcome.tenant, outcome.tenant_limits, outcome, now)
        if outcome.status >= 400:
            return
        self._series(self.e2e, outcome.route).add(outcome.e2e_s, now)
        if outcome.ttft_s is not None:
            self._series(self.ttft, outcome.route).add(outcome.ttft_s, now)
        self._series(self.cost, outcome.tenant).add(outcome.cost_usd, now)

    def _series(self, by: dict[str, Slices], name: str) -> Slices:
        slices = by.get(name)
        if slices is None:
            slices = by[name] = Slices(self._window_s, self._baseline_s)
        return slices
