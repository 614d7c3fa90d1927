"""What the engine's per-request instrumentation costs in throughput.

One twin engine server (`twin.py`) serves the same engine with recording off, with the
Prometheus metrics on, and with OpenTelemetry on as well. Each round sends the same seeded
workload (prefix caching off, so every run does the same work) to every arm at a fixed
closed-loop concurrency, in an order shuffled per round; a round's ratios (on / off, otel / off)
pair runs made a few seconds apart, so drift of the machine over the whole run cancels out.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from strata.bench.loadgen import run_load
from strata.bench.observability.processes import Twin
from strata.bench.observability.stats import Overhead, histogram_count, paired_ratios
from strata.bench.observability.twin import OFF
from strata.bench.shapes import Budget, FixedConcurrency
from strata.bench.workload import Fixed, LengthDist, Uniform, Workload
from strata.errors import ConfigError

ENGINE_TTFT = "strata:time_to_first_token_seconds"
MAX_OVERHEAD = 0.02  # the target: instrumentation costs < 2% of throughput
MIN_PAIRS = 10  # fewer pairs cannot separate 2% from noise on a shared machine

Say = Callable[[str], None]


@dataclass(frozen=True)
class OverheadPlan:
    rounds: int = 12
    concurrency: int = 16
    requests: int = 48  # per run
    output_tokens: int = 32
    prompt_len: LengthDist = field(default_factory=lambda: Uniform(20, 120))
    otel: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for option, value in (("--rounds", self.rounds), ("--concurrency", self.concurrency),
                              ("--requests-per-run", self.requests),
                              ("--output-tokens", self.output_tokens)):  # fmt: skip
            if value < 1:
                raise ConfigError(f"{option} must be >= 1, got {value}")

    @property
    def workload(self) -> Workload:
        return Workload(self.prompt_len, Fixed(self.output_tokens), seed=self.seed)

    def describe(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "concurrency": self.concurrency,
            "requests_per_run": self.requests,
            "otel": self.otel,
            **self.workload.describe(),
        }


@dataclass(frozen=True)
class Run:
    round: int
    position: int  # 0: the round's first run
    arm: str
    output_tokens: int
    duration_s: float
    failed: int

    @property
    def throughput(self) -> float:
        """Output tokens per second over the run's wall time."""
        return self.output_tokens / self.duration_s


@dataclass(frozen=True)
class OverheadResult:
    plan: OverheadPlan
    arms: tuple[str, ...]
    runs: tuple[Run, ...]
    recorded: dict[str, float]  # TTFT observations in each arm's /metrics at the end
    otel_exports: dict[str, int] = field(default_factory=dict)  # OTLP posts received, by path

    def throughputs(self, arm: str) -> list[float]:
        return [run.throughput for run in self.runs if run.arm == arm]

    def overhead(self, arm: str) -> Overhead:
        """`arm` against the arm with recording off, one ratio per round."""
        ratios = paired_ratios(self.throughputs(arm), self.throughputs(OFF))
        return Overhead.of(ratios, MAX_OVERHEAD, seed=self.plan.seed)


async def measure_overhead(twin: Twin, plan: OverheadPlan, say: Say) -> OverheadResult:
    """A warm-up run per arm, then `plan.rounds` rounds of one run per arm. The OTLP exports
    are left for the caller to fill in once the server has flushed its last ones."""
    arms = twin.arms
    for arm in arms:
        await _run(twin, plan, arm, Budget(requests=plan.concurrency))
    order_rng = random.Random(f"strata-observability-order:{plan.seed}")
    runs: list[Run] = []
    for number in range(plan.rounds):
        for position, arm in enumerate(order_rng.sample(arms, len(arms))):
            run = await _run(twin, plan, arm, Budget(requests=plan.requests), number, position)
            runs.append(run)
            say(f"round {number + 1}/{plan.rounds} {arm:>4}: {run.throughput:6.1f} tok/s "
                f"({run.duration_s:.1f} s, {run.failed} failed)")  # fmt: skip
    recorded = {arm: histogram_count(await asyncio.to_thread(twin.scrape, arm), ENGINE_TTFT)
                for arm in arms}  # fmt: skip
    return OverheadResult(plan, arms, tuple(runs), recorded)


async def _run(
    twin: Twin, plan: OverheadPlan, arm: str, budget: Budget, number: int = -1, position: int = 0
) -> Run:
    shape = FixedConcurrency(plan.concurrency)
    load = await run_load(twin.target(arm), plan.workload, shape, budget=budget)
    summary = load.summary
    return Run(number, position, arm, summary.output_tokens, summary.duration_s, summary.failed)
