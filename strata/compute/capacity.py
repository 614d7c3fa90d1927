"""The capacity and cost planner: replicas per hour, and what each purchasing strategy costs.

Strategies, each priced per month (730 hours; the profile repeats to fill it):
- all on-demand: every replica-hour at the on-demand price;
- all reserved at peak: the peak number of replicas reserved around the clock;
- reserved + on-demand: a reserved baseline (the level that minimises cost, found by trying
  every level) plus on-demand replicas for the hours above it;
- reserved + spot: the same with the burst on spot behind automatic on-demand fallback; each
  preemption costs `fallback_hours` of an on-demand replica and retries the requests sent to
  the lost replica while the gateway fails over. The floor needed in every hour stays
  reserved ("reserve a baseline for steady traffic"): spot is for the burst only, so its
  reserved level is searched from that floor up.

A reserved replica pays when it would be busy for more than reserved/on-demand of the hours
(about 2/3 at the default prices): that is why a peak-to-average near 3:1 or lower makes
reservations pay, and why a spiky profile reserves only its always-busy floor.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from strata.compute.traffic import TrafficProfile
from strata.errors import ConfigError

HOURS_PER_MONTH = 730  # 8,760 / 12
SECONDS_PER_HOUR = 3600
FAILOVER_RULE_S = 90.0  # the seed's rule: spot only with automatic failover within 90 s


@dataclass(frozen=True)
class TierPrices:
    """USD per GPU-hour in each tier (`pricing.gpu_hour_usd.<gpu>`)."""

    reserved: float
    on_demand: float
    spot: float | None = None


@dataclass(frozen=True)
class CapacityInputs:
    """Everything the planner needs; `replica_rps` is one replica's throughput at the SLO."""

    profile: TrafficProfile
    replica_rps: float
    gpu: str
    prices: TierPrices
    gpus_per_replica: int = 1
    min_replicas: int = 1
    spot_preemptions_per_hour: float = 0.01
    reserved_term_months: int = 12
    failover_s: float = FAILOVER_RULE_S
    fallback_hours: float = 1.0


@dataclass(frozen=True)
class SpotRisk:
    """What running the burst on spot risks per month."""

    preemptions: float  # expected reclaims of spot replicas
    lost_replica_hours: float  # capacity missing while the gateway fails over
    retried_requests: float  # sent to a reclaimed replica during failover: retried elsewhere
    retried_share: float  # of all requests
    failover_s: float

    @property
    def within_rule(self) -> bool:
        return self.failover_s <= FAILOVER_RULE_S


@dataclass(frozen=True)
class Strategy:
    """One way to buy the capacity; money in USD per month, hours in replica-hours."""

    name: str
    reserved_replicas: int
    reserved_usd: float
    on_demand_usd: float
    spot_usd: float
    on_demand_hours: float
    spot_hours: float
    starts: float  # replica start-ups per month (on-demand or spot scale-outs)
    commitment_usd: float  # reserved cost over the whole term
    risk: SpotRisk | None = None

    @property
    def monthly_usd(self) -> float:
        return self.reserved_usd + self.on_demand_usd + self.spot_usd


@dataclass(frozen=True)
class CapacityPlan:
    inputs: CapacityInputs
    replicas: tuple[int, ...]  # needed in each hour of the profile
    strategies: tuple[Strategy, ...]
    recommended: Strategy

    @property
    def peak_replicas(self) -> int:
        return max(self.replicas)

    def strategy(self, name: str) -> Strategy:
        return next(s for s in self.strategies if s.name == name)


def plan_capacity(inputs: CapacityInputs) -> CapacityPlan:
    """Validate `inputs` (ConfigError naming the option) and price every strategy."""
    check_inputs(inputs)
    replicas = replicas_needed(inputs.profile, inputs.replica_rps, inputs.min_replicas)
    strategies = [
        priced(inputs, replicas, "all on-demand", 0),
        priced(inputs, replicas, "all reserved at peak", max(replicas)),
        priced(inputs, replicas, "reserved + on-demand", best_baseline(inputs, replicas)),
    ]
    if inputs.prices.spot is not None:
        level = best_baseline(inputs, replicas, spot=True, lowest=min(replicas))
        strategies.append(priced(inputs, replicas, "reserved + spot", level, spot=True))
    return CapacityPlan(inputs, replicas, tuple(strategies), recommend(strategies))


def replicas_needed(profile: TrafficProfile, replica_rps: float, minimum: int) -> tuple[int, ...]:
    """Replicas each hour: the hour's mean rate over one replica's rate at the SLO, rounded
    up, never below `minimum`."""
    return tuple(
        max(minimum, math.ceil(rph / SECONDS_PER_HOUR / replica_rps - 1e-9))
        for rph in profile.requests_per_hour
    )


def burst_hours(replicas: tuple[int, ...], baseline: int) -> float:
    """Replica-hours per month above a reserved `baseline`."""
    scale = HOURS_PER_MONTH / len(replicas)
    return sum(max(r - baseline, 0) for r in replicas) * scale


def scale_ups(replicas: tuple[int, ...], baseline: int) -> float:
    """Burst replicas started per month (the profile wraps around: hour 0 follows the last)."""
    burst = [max(r - baseline, 0) for r in replicas]
    starts = sum(max(b - a, 0) for a, b in zip([burst[-1], *burst[:-1]], burst, strict=True))
    return starts * HOURS_PER_MONTH / len(replicas)


def monthly_cost(
    inputs: CapacityInputs, replicas: tuple[int, ...], baseline: int, spot: bool = False
) -> float:
    """USD per month for a reserved `baseline` plus the burst on on-demand (or spot)."""
    return priced(inputs, replicas, "", baseline, spot).monthly_usd


def best_baseline(
    inputs: CapacityInputs, replicas: tuple[int, ...], spot: bool = False, lowest: int = 0
) -> int:
    """The reserved level from `lowest` to the peak with the lowest monthly cost (the lowest
    such level on ties): every level is priced, so nothing is assumed about the curve."""
    levels = range(lowest, max(replicas) + 1)
    costs = {b: round(monthly_cost(inputs, replicas, b, spot), 6) for b in levels}
    return min(levels, key=lambda b: (costs[b], b))


def priced(
    inputs: CapacityInputs, replicas: tuple[int, ...], name: str, baseline: int,
    spot: bool = False,
) -> Strategy:  # fmt: skip
    """The monthly bill and risk of a reserved `baseline` with the rest bursting."""
    prices, gpus = inputs.prices, inputs.gpus_per_replica
    reserved = baseline * HOURS_PER_MONTH * gpus * prices.reserved
    burst = burst_hours(replicas, baseline)
    risk = spot_risk(inputs, burst) if spot else None
    fallback = risk.preemptions * inputs.fallback_hours if risk else 0.0
    on_demand_hours = fallback if spot else burst
    spot_usd = burst * gpus * (prices.spot or 0.0) if spot else 0.0
    return Strategy(
        name, baseline, reserved, on_demand_hours * gpus * prices.on_demand, spot_usd,
        on_demand_hours, burst if spot else 0.0, scale_ups(replicas, baseline),
        reserved * inputs.reserved_term_months, risk,
    )  # fmt: skip


def spot_risk(inputs: CapacityInputs, spot_hours: float) -> SpotRisk:
    """Reclaims expected over `spot_hours` replica-hours, and what each costs in service:
    the replica's share of traffic during the failover window must be retried elsewhere."""
    preemptions = spot_hours * inputs.spot_preemptions_per_hour
    retried = preemptions * inputs.replica_rps * inputs.failover_s
    monthly_requests = inputs.profile.mean * HOURS_PER_MONTH
    return SpotRisk(
        preemptions,
        preemptions * inputs.failover_s / SECONDS_PER_HOUR,
        retried,
        retried / monthly_requests if monthly_requests else 0.0,
        inputs.failover_s,
    )


def recommend(strategies: list[Strategy]) -> Strategy:
    """The cheapest strategy that respects the failover rule."""
    allowed = [s for s in strategies if s.risk is None or s.risk.within_rule]
    return min(allowed, key=lambda s: (round(s.monthly_usd, 6), s.reserved_replicas))


def reservation_break_even(prices: TierPrices) -> float:
    """Share of hours a replica must be busy for reserving it to beat on-demand."""
    return prices.reserved / prices.on_demand


def busy_share(replicas: tuple[int, ...], level: int) -> float:
    """Share of hours that need at least `level` replicas."""
    return sum(r >= level for r in replicas) / len(replicas)


def check_inputs(inputs: CapacityInputs) -> None:
    """Raise ConfigError naming the option for anything that cannot be planned."""
    checks: list[tuple[Callable[[], bool], str]] = [
        (lambda: inputs.replica_rps > 0, "--replica-rps must be > 0: requests per second one "
         "replica serves within the SLO (measure it with `strata bench serve --sweep`)."),
        (lambda: inputs.gpus_per_replica >= 1, "--gpus-per-replica must be at least 1."),
        (lambda: inputs.min_replicas >= 0, "--min-replicas cannot be negative."),
        (lambda: inputs.failover_s >= 0, "--failover-s cannot be negative."),
        (lambda: inputs.fallback_hours >= 0, "--fallback-hours cannot be negative."),
        (lambda: inputs.spot_preemptions_per_hour >= 0,
         "pricing.spot_preemptions_per_hour cannot be negative."),
    ]  # fmt: skip
    for ok, message in checks:
        if not ok():
            raise ConfigError(message)
