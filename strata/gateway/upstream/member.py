"""An upstream as the router sees it: the upstream itself, its circuit breaker and its health.

`healthy` is set by the health monitor only; the breaker moves with request outcomes only.
An upstream takes requests while it is healthy and its breaker lets them through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from strata.config import Tier, UpstreamKind
from strata.gateway.upstream.breaker import BreakerState, CircuitBreaker
from strata.gateway.upstream.upstreams import Upstream


@dataclass(frozen=True)
class UpstreamHealth:
    """One upstream's state for `/readyz` and operators."""

    name: str
    kind: UpstreamKind
    tier: Tier
    models: tuple[str, ...]
    healthy: bool  # the last health check passed (True before the first one)
    breaker: BreakerState
    last_error: str | None  # the newest failure, from a health check or a request
    in_flight: int = 0
    draining: bool = False

    @property
    def available(self) -> bool:
        return self.healthy and self.breaker != "open" and not self.draining


class Member:
    def __init__(self, upstream: Upstream, breaker: CircuitBreaker) -> None:
        self.upstream = upstream
        self.breaker = breaker
        self.healthy = True
        self.last_error: str | None = None
        self.in_flight = 0  # replies handed out and not yet closed
        self.draining = False  # told it will go away: no new requests
        self.on_started: list[Callable[[], None]] = []  # told each time a request starts
        self.on_finished: list[Callable[[], None]] = []  # told each time a slot frees

    @property
    def name(self) -> str:
        return self.upstream.name

    @property
    def tier(self) -> Tier:
        return self.upstream.tier

    @property
    def available(self) -> bool:
        return self.healthy and not self.draining and self.breaker.allows()

    def started(self) -> None:
        """One request to this upstream began (a router attempt); it is in flight until
        `finished`."""
        self.in_flight += 1
        for listener in self.on_started:
            listener()

    def finished(self) -> None:
        """One request in flight ended (its reply was closed, or no reply came)."""
        self.in_flight -= 1
        for listener in self.on_finished:
            listener()

    @property
    def saturated(self) -> bool:
        limit = self.upstream.settings.max_in_flight
        return limit is not None and self.in_flight >= limit

    def snapshot(self) -> UpstreamHealth:
        up = self.upstream
        return UpstreamHealth(
            up.name, up.kind, up.tier, up.models, self.healthy, self.breaker.state,
            self.last_error, self.in_flight, self.draining,
        )  # fmt: skip
