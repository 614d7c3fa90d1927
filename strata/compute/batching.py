"""`strata plan batching`, the arithmetic: simulate each batch cap and batching window on the
given traffic, and recommend the one that serves the most traffic within the SLO.

Traffic is what `strata bench serve` sends: a `Workload` (the same length distributions and
seeds) released by an open-loop `LoadShape` (Poisson or evenly spaced, the same arrival
times). Each candidate is simulated at the offered rate (its latencies and throughput there),
and its *capacity* is found the way `strata bench serve --sweep` finds a server's: the same
`RateSearch` over simulated rates, a rate holding when the SLO's p95s hold with at most 1% of
requests refused. The recommendation is the candidate with the highest capacity among those
that hold the SLO at the offered rate; ties go to the lower p95 TTFT there, then to the
shorter window and the smaller cap (less KV memory).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

from strata.bench.records import RequestRecord
from strata.bench.shapes import ConstantRate, PoissonRate
from strata.bench.slo import Slo
from strata.bench.summary import Summary, summarize
from strata.bench.sweep import RateSearch, SweepPlan
from strata.bench.workload import Workload
from strata.compute.profile import EngineProfile
from strata.compute.simulator import SimEngine, SimRequest, simulate
from strata.errors import ConfigError

SEARCH_SPAN = 64.0  # the capacity search looks from rate / SEARCH_SPAN to rate x SEARCH_SPAN
SEARCH_STEPS = 5  # bisection probes once bracketed
SEARCH_TOLERANCE = 0.05


@dataclass(frozen=True)
class Traffic:
    workload: Workload
    arrivals: PoissonRate | ConstantRate
    requests: int  # how many to simulate

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ConfigError("--requests: must be >= 1")

    @property
    def rate(self) -> float:
        return self.arrivals.rate

    def at_rate(self, rate: float) -> Traffic:
        return replace(self, arrivals=replace(self.arrivals, rate=rate))

    def sim_requests(self) -> list[SimRequest]:
        """Request i: the workload's lengths for i, the shape's i-th arrival time."""
        shared = self.workload.shared_prefix_tokens
        times = itertools.islice(self.arrivals.arrivals(), self.requests)
        out = []
        for index, at in enumerate(times):
            spec = self.workload.request(index)
            out.append(SimRequest(at, shared + spec.prompt_tokens, spec.output_tokens, shared))
        return out


@dataclass(frozen=True)
class Candidate:
    cap: int  # max_num_seqs
    window_s: float  # batch_window_ms / 1000


@dataclass(frozen=True)
class Prediction:
    candidate: Candidate
    summary: Summary  # at the offered rate
    holds: bool  # whether the SLO holds at the offered rate
    capacity: float | None  # highest simulated rate that holds the SLO; None: not even the lowest


@dataclass(frozen=True)
class BatchingPlan:
    traffic: Traffic
    slo: Slo
    token_budget: int
    predictions: list[Prediction]
    recommended: Prediction | None  # None when no candidate holds the SLO at the offered rate
    max_profiled_batch: int


def predict(
    profile: EngineProfile,
    traffic: Traffic,
    candidate: Candidate,
    token_budget: int,
    slo: Slo | None = None,
    jitter_seed: int | None = None,
) -> Summary:
    """The load generator's summary of a simulated run of `traffic` under `candidate`."""
    engine = sim_engine(profile, candidate, token_budget)
    jitter = random.Random(jitter_seed) if jitter_seed is not None else None
    records = simulate(traffic.sim_requests(), engine, profile.step_time, jitter).records
    return summarize(records, run_seconds(records), slo)


def sim_engine(profile: EngineProfile, candidate: Candidate, token_budget: int) -> SimEngine:
    sizes = profile.engine
    return SimEngine(
        max_num_seqs=candidate.cap,
        token_budget=token_budget,
        batch_window_s=candidate.window_s,
        block_size=sizes.block_size,
        num_blocks=sizes.num_blocks,
        max_model_len=sizes.max_model_len,
        max_waiting=sizes.max_waiting,
        enable_prefix_caching=sizes.enable_prefix_caching,
    )


def run_seconds(records: Sequence[RequestRecord]) -> float:
    """From the first arrival (t = 0) to the last answer, as the load generator times a run."""
    return max((r.finished or r.sent for r in records), default=0.0)


def plan_batching(
    profile: EngineProfile,
    traffic: Traffic,
    slo: Slo,
    candidates: Sequence[Candidate],
    token_budget: int,
) -> BatchingPlan:
    if not candidates:
        raise ConfigError("--caps and --windows-ms: give at least one of each")
    predictions = [_evaluate(profile, traffic, slo, c, token_budget) for c in candidates]
    return BatchingPlan(
        traffic, slo, token_budget, predictions, recommend(predictions),
        profile.max_profiled_batch,
    )  # fmt: skip


def _evaluate(
    profile: EngineProfile, traffic: Traffic, slo: Slo, candidate: Candidate, token_budget: int
) -> Prediction:
    summary = predict(profile, traffic, candidate, token_budget, slo)
    holds = slo.held_by(summary)
    search = RateSearch(SweepPlan(
        start_rate=traffic.rate, max_rate=traffic.rate * SEARCH_SPAN,
        min_rate=traffic.rate / SEARCH_SPAN, refine_steps=SEARCH_STEPS,
        tolerance=SEARCH_TOLERANCE,
    ))  # fmt: skip
    search.record(traffic.rate, holds)
    while (rate := search.next_rate()) is not None:
        probe = predict(profile, traffic.at_rate(rate), candidate, token_budget, slo)
        search.record(rate, slo.held_by(probe))
    return Prediction(candidate, summary, holds, search.held)


def recommend(predictions: Sequence[Prediction]) -> Prediction | None:
    holding = [p for p in predictions if p.holds]
    if not holding:
        return None
    return max(holding, key=lambda p: (
        p.capacity or 0.0, -p.summary.ttft_ms.p95, -p.candidate.window_s, -p.candidate.cap,
    ))  # fmt: skip
