"""The values that cross the limiter's boundary, and the `Limiter` contract both backends keep.

The gateway builds an `Ask` at admission, gets a `Reservation` back from `reserve`, and hands
that reservation to exactly one of `settle` (with the real `Usage`) or `release` (on failure).
Money is float US dollars at this boundary and whole micro-dollars inside.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from strata.gateway.limits.meters import Meter, micros_to_usd, usd_to_micros
from strata.gateway.principal import Scope, ScopeKind

Clock = Callable[[], float]  # wall-clock time in Unix epoch seconds (time.time)


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request asks for at admission: the worst case it may use."""

    requests: int = 1
    tokens: int = 0  # prompt tokens + max_tokens
    cost_usd: float = 0.0  # the price of those tokens

    @property
    def cost_micros(self) -> int:
        return usd_to_micros(self.cost_usd)


@dataclass(frozen=True, slots=True)
class Usage:
    """What a finished request really used."""

    tokens: int
    cost_usd: float = 0.0


class SeedEntry(NamedTuple):
    """One scope's usage so far today and this month, read from the usage ledger at start-up."""

    kind: ScopeKind
    scope_id: str
    day_tokens: int
    day_cost_usd: float
    month_tokens: int
    month_cost_usd: float


class Check(NamedTuple):
    """One limit of one scope that a reservation counts against."""

    scope: Scope
    meter: Meter
    limit: int  # in the meter's unit: requests, tokens, micro-dollars or slots
    amount: int  # what the ask takes from it
    window: int  # the window's number; SLOTS_WINDOW for a concurrency gauge
    resets_at: float  # epoch seconds when the window ends; 0.0 for a gauge


SLOTS_WINDOW = -1


@dataclass(eq=False, slots=True)
class Reservation:
    """What `reserve` took. Pass it to `settle` or `release` once; a second call does nothing.

    `checks` are the limits it counts against, each with the window it was taken from, so a
    settle after the window rolled over corrects the old window (or nothing), never the new one.
    A reservation admitted without counting (unlimited scopes, or Redis down with
    `on_redis_error: open`) has no checks.
    """

    id: str
    requests: int
    tokens: int
    cost_micros: int
    checks: tuple[Check, ...]
    is_open: bool = True

    @property
    def cost_usd(self) -> float:
        return micros_to_usd(self.cost_micros)

    def close(self) -> bool:
        """Mark it settled or released; False when it already was (the caller then stops)."""
        was_open = self.is_open
        self.is_open = False
        return was_open


class Limiter(Protocol):
    """Limits and quotas that hold exactly under concurrency: reserve first, settle after.

    `reserve` checks every limit of every scope and takes the ask from all of them atomically,
    or takes nothing and raises `RateLimitError` (429) naming a scope and limit in the way (of
    several, the one that clears last). `settle` lowers the counters to the real usage (never
    raises them above what was reserved) and frees the concurrency slot; `release` gives
    everything back, the request count included. Both are idempotent, finish even when the
    caller is cancelled, and never raise for a store outage.
    """

    async def reserve(self, scopes: Sequence[Scope], ask: Ask) -> Reservation:
        """Take `ask` from every limit of `scopes` (distinct kinds, e.g. `Principal.scopes()`)
        at once, or raise `RateLimitError`; `RedisLimiter` may raise `OverloadedError`."""
        ...

    async def settle(self, reservation: Reservation, usage: Usage) -> None:
        """Correct the reserved tokens and cost down to `usage`; free the slot."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """Return everything `reservation` took: requests, tokens, cost and the slot."""
        ...

    async def seed(self, entries: Iterable[SeedEntry]) -> None:
        """Start today's and this month's counters from the ledger, where none exist yet."""
        ...

    async def aclose(self) -> None:
        """Release connections; the limiter is not used afterwards."""
        ...
