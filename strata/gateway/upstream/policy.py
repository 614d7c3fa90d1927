"""Small routing policies: in which order a group's upstreams are tried, and what is retried.

`TierOrder` is the ordering: reserved first, bursting to spot and then on-demand as upstreams
saturate, config order breaking ties. Another ordering is another `OrderPolicy`, not a flag:
`RoundRobin` (a baseline for benchmarks), and `PrefixAffinity` (`affinity`), which wraps
another policy and moves the strata engine caching the prompt's prefix to the front.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from strata.config import RoutingSettings, Tier
from strata.errors import ConfigError
from strata.gateway.upstream.member import Member
from strata.gateway.upstream.upstreams import UpstreamCall


class OrderPolicy(Protocol):
    async def order(self, members: Sequence[Member], call: UpstreamCall) -> Sequence[Member]:
        """`members` (in config order, all eligible) in the order to try them for `call`.
        Changes no member."""
        ...


# Cheapest capacity first: reserved is paid for anyway, spot is the cheapest burst (safe only
# because the group also has on-demand to fall back to: checked at start-up), on-demand last.
TIER_RANK: dict[Tier, int] = {"reserved": 0, "spot": 1, "on-demand": 2}


class TierOrder:
    """Reserved first, then bursting to spot, then on-demand: an upstream at its
    `max_in_flight` moves behind every unsaturated one, and within a rank the least busy goes
    first. Config order breaks ties (the sort is stable)."""

    async def order(self, members: Sequence[Member], call: UpstreamCall) -> Sequence[Member]:
        return sorted(members, key=lambda m: (m.saturated, TIER_RANK[m.tier], m.in_flight))


@dataclass
class RoundRobin:
    """Each group's members in turn, whatever their tier or load: the baseline prefix-aware
    routing is measured against (`strata bench routing`)."""

    _turns: dict[tuple[str, ...], int] = field(default_factory=dict)

    async def order(self, members: Sequence[Member], call: UpstreamCall) -> Sequence[Member]:
        if not members:
            return members
        group = tuple(m.name for m in members)
        turn = self._turns.get(group, 0)
        self._turns[group] = turn + 1
        start = turn % len(members)
        return [*members[start:], *members[:start]]


def check_spot_fallback(groups: Mapping[str, Sequence[Member]]) -> None:
    """Refuse a group that would serve users from spot without an on-demand upstream to fail
    over to (a reclaimed spot replica must never leave a model unserved)."""
    for model, members in groups.items():
        tiers = {m.tier for m in members}
        if "spot" in tiers and "on-demand" not in tiers:
            spot = [m.name for m in members if m.tier == "spot"]
            raise ConfigError(
                f"Model '{model}' is served by spot upstreams {spot} without an on-demand "
                "upstream to fail over to; add one (tier: on-demand) or change their tier."
            )


@dataclass(frozen=True)
class RetryPolicy:
    """What is worth another attempt, and how long to wait before going back to an upstream
    that already failed this request (another upstream is tried at once)."""

    retries: int  # attempts after the first, failovers included
    backoff_s: float  # the first wait; doubles with each

    @classmethod
    def from_settings(cls, routing: RoutingSettings) -> RetryPolicy:
        return cls(routing.retries, routing.backoff_ms / 1000)

    @staticmethod
    def retryable(status: int) -> bool:
        """429 and every 5xx: the upstream could not serve the request now. Other 4xx are the
        request's fault and would fail anywhere."""
        return status == 429 or status >= 500

    @staticmethod
    def counts_against(status: int) -> bool:
        """Whether the status counts toward the circuit breaker: a 429 upstream works."""
        return status != 429

    def delay_s(self, backoffs: int) -> float:
        return self.backoff_s * 2**backoffs
