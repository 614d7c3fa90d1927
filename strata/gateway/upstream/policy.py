"""Small routing policies: in which order a group's upstreams are tried, and what is retried.

`ConfigOrder` is the default ordering (the order of `upstreams` in the config). A tier-aware
policy (reserved before on-demand before spot, say) is another `OrderPolicy`, not a flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from strata.config import RoutingSettings
from strata.gateway.upstream.member import Member


class OrderPolicy(Protocol):
    def order(self, members: Sequence[Member]) -> Sequence[Member]:
        """`members` (in config order, all eligible) in the order to try them. Pure."""
        ...


class ConfigOrder:
    """Try upstreams in the order the config lists them."""

    def order(self, members: Sequence[Member]) -> Sequence[Member]:
        return members


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
