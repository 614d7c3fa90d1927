"""Find the highest Poisson arrival rate at which a server still holds an SLO.

`RateSearch` is the policy, pure and synchronous: it proposes a rate, is told whether that rate
held, and proposes the next. It doubles from `start_rate` until a rate fails (or halves until
one holds), then bisects between the best rate that held and the lowest that failed.
`run_sweep` runs one bounded load probe per proposed rate. Each probe sends fresh prompts (the
request indices continue) with its own arrival sequence, so no probe warms the prefix cache for
the next; the whole sweep is still fixed by the seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from strata.bench.client import Target, http_client, with_model
from strata.bench.loadgen import LoadResult, OnDone, run_load
from strata.bench.shapes import Budget, PoissonRate
from strata.bench.slo import Slo
from strata.bench.workload import Workload
from strata.errors import ConfigError


@dataclass(frozen=True)
class SweepPlan:
    start_rate: float = 1.0  # requests per second
    max_rate: float = 256.0
    min_rate: float = 1 / 16
    refine_steps: int = 4  # bisection probes after the bracket is found
    tolerance: float = 0.1  # stop refining once (failed - held) / held is this small

    def __post_init__(self) -> None:
        if not 0 < self.min_rate <= self.start_rate <= self.max_rate:
            raise ConfigError("a sweep needs 0 < min rate <= start rate <= max rate")
        if self.refine_steps < 0 or self.tolerance <= 0:
            raise ConfigError("a sweep needs refine steps >= 0 and a tolerance > 0")


@dataclass
class RateSearch:
    plan: SweepPlan
    held: float | None = None  # the highest rate that held
    failed: float | None = None  # the lowest rate that failed
    refined: int = 0

    def next_rate(self) -> float | None:
        """The next rate to probe, or None when the search is over."""
        if self.failed is None:
            return self._up(self.held)
        if self.held is None:
            return self._down(self.failed)
        return self._bisect(self.held, self.failed)

    def record(self, rate: float, held: bool) -> None:
        if self.held is not None and self.failed is not None:
            self.refined += 1
        if held:
            self.held = rate if self.held is None else max(rate, self.held)
        else:
            self.failed = rate if self.failed is None else min(rate, self.failed)

    def _up(self, held: float | None) -> float | None:
        if held is None:
            return self.plan.start_rate
        return min(2 * held, self.plan.max_rate) if held < self.plan.max_rate else None

    def _down(self, failed: float) -> float | None:
        return max(failed / 2, self.plan.min_rate) if failed > self.plan.min_rate else None

    def _bisect(self, held: float, failed: float) -> float | None:
        if self.refined >= self.plan.refine_steps or (failed - held) / held <= self.plan.tolerance:
            return None
        return (held + failed) / 2


@dataclass(frozen=True)
class Probe:
    rate: float
    held: bool
    result: LoadResult


@dataclass(frozen=True)
class SweepResult:
    plan: SweepPlan
    slo: Slo
    probes: list[Probe] = field(default_factory=list)

    @property
    def best_rate(self) -> float | None:
        """The highest probed rate that held the SLO; None if none did."""
        return max((p.rate for p in self.probes if p.held), default=None)

    @property
    def best(self) -> Probe | None:
        return next((p for p in self.probes if p.held and p.rate == self.best_rate), None)


ProbeHook = Callable[[float], OnDone | None]  # called as a probe starts; returns its on_done


async def run_sweep(
    target: Target,
    workload: Workload,
    slo: Slo,
    plan: SweepPlan,
    budget: Budget,
    on_probe: ProbeHook | None = None,
    warmup: int = 0,
) -> SweepResult:
    """Probe rates as `RateSearch` proposes them, each bounded by `budget`. Stops early when
    a probe has no successful request at all (a wrong key, a dead server). `warmup` requests
    precede the first probe only."""
    target = await _named(target)
    search, sweep, first_index = RateSearch(plan), SweepResult(plan, slo), 0
    while (rate := search.next_rate()) is not None:
        shape = PoissonRate(rate, seed=workload.seed, stream=len(sweep.probes))
        on_done = on_probe(rate) if on_probe is not None else None
        result = await run_load(
            target,
            workload,
            shape,
            slo,
            budget=budget,
            first_index=first_index,
            warmup=0 if sweep.probes else warmup,
            on_done=on_done,
        )
        first_index += len(result.records)
        sweep.probes.append(Probe(rate, slo.held_by(result.summary), result))
        if result.summary.succeeded == 0:
            break  # every request failed: the target refuses us, a lower rate will not help
        search.record(rate, sweep.probes[-1].held)
    return sweep


async def _named(target: Target) -> Target:
    async with http_client(target, 1) as http:
        return await with_model(http, target)
