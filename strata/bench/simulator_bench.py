"""`strata bench simulator`: how well `strata plan batching`'s simulator predicts the real engine.

One engine (the async `Engine` in this process, streaming with detokenization, the given dtype,
threads, cap, token budget and window) is measured three ways:

1. *Saturation*: a closed loop with as many clients as the batch cap keeps every step full;
   its completion rate over the middle half of the run is the engine's saturation rate.
2. *Load levels*: Poisson traffic at each fraction of saturation, from the same `Workload` and
   `PoissonRate` definitions `strata bench serve` uses. Each level's trace runs `--repeats`
   times on the real engine, in rounds (every level once, then again) so that a slow minute of
   a shared machine spreads over the levels, and is simulated once on the same trace (same
   arrivals, same lengths) with the profile.
3. *Profile*: the step-time profile `strata bench engine --profile` measures, on this very
   engine (or the one `--profile` names). Its passes over the grid are interleaved with the
   rounds (one before each round), so the profile samples the same minutes of a shared
   machine, and its slow and fast spells, as the runs it predicts.

Real and simulated runs are summarized by the same `strata.bench.summary.summarize`; each
level compares the prediction with the median of its real runs.

Prompts are random token ids of the planned lengths with a first token unique to each run, so
no run hits the prefix cache another run filled (the simulator assumes no hits either).

    strata bench simulator [--levels 0.3 0.45 0.6 0.8] [--repeats 3] [--requests 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strata.bench.records import BenchRequest, RequestRecord
from strata.bench.shapes import PoissonRate
from strata.bench.simulator_report import markdown
from strata.bench.summary import Summary, summarize
from strata.bench.workload import CHAT_OUTPUT, CHAT_PROMPT, Workload, parse_length
from strata.compute.batching import Candidate, Traffic, predict, run_seconds
from strata.compute.profile import EngineProfile, read_profile
from strata.compute.step_time import StepShape, fit_step_time
from strata.errors import ConfigError, StrataError

if TYPE_CHECKING:
    from strata.bench.strata_peer import StrataPeer

METRICS = ("ttft_p50_ms", "ttft_p95_ms", "e2e_p50_ms", "e2e_p95_ms")
JITTER_SEEDS = 5
PLAN_LOAD = 0.6  # the report's planning example: this share of the saturation rate
PLAN_REQUESTS = 200


@dataclass(frozen=True)
class Level:
    load: float  # fraction of the saturation rate
    traffic: Traffic


@dataclass(frozen=True)
class RealRun:
    metrics: dict[str, float]
    speed: float  # median measured / profiled step time over the run's steps


# -- real runs -----------------------------------------------------------------------------------


def real_requests(traffic: Traffic, run: int, vocab: int) -> list[BenchRequest]:
    """`traffic`'s requests as token ids; the first token is unique to (run, request)."""
    rng = random.Random(f"strata-bench-simulator:{run}")
    out = []
    for spec in traffic.sim_requests():
        first = 1000 + rng.randrange(vocab - 1000)
        ids = [first] + [rng.randrange(1000, vocab) for _ in range(spec.prompt_tokens - 1)]
        out.append(BenchRequest(ids, spec.output_tokens, spec.arrival_s))
    return out


def summary_of(records: list[RequestRecord]) -> Summary:
    """As the load generator summarizes a run: from the first send to the last answer."""
    start = min(r.sent for r in records)
    shifted = [_shifted(r, start) for r in records]
    return summarize(shifted, run_seconds(shifted), None)


def _shifted(r: RequestRecord, start: float) -> RequestRecord:
    def at(t: float | None) -> float | None:
        return None if t is None else t - start

    return RequestRecord(
        r.sent - start, at(r.first_token), at(r.finished), [t - start for t in r.token_times],
        r.prompt_tokens, r.output_tokens, r.error, r.error_detail,
    )  # fmt: skip


def saturation_rate(peer: StrataPeer, workload: Workload, clients: int, count: int) -> float:
    """Requests per second a closed loop of `clients` completes over the middle half."""
    traffic = Traffic(workload, PoissonRate(1.0), count)  # arrivals unused: a closed loop
    requests = real_requests(traffic, run=-1, vocab=_vocab(peer))
    records = asyncio.run(_closed_loop(peer, requests, clients))
    finished = sorted(r.finished for r in records if r.finished is not None)
    low, high = len(finished) // 4, (3 * len(finished)) // 4
    return (high - low) / (finished[high] - finished[low])


async def _closed_loop(
    peer: StrataPeer, requests: list[BenchRequest], clients: int
) -> list[RequestRecord]:
    queue, records = deque(requests), []

    async def client() -> None:
        while queue:
            records.append(await peer.serve(queue.popleft(), time.perf_counter()))

    await peer.engine.start()
    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        await peer.engine.stop()
    return records


def _vocab(peer: StrataPeer) -> int:
    from strata.bench.step_profile import vocab_size

    return vocab_size(peer)


# -- the comparison ------------------------------------------------------------------------------


def metrics(summary: Summary) -> dict[str, float]:
    return {
        "ttft_p50_ms": summary.ttft_ms.p50,
        "ttft_p95_ms": summary.ttft_ms.p95,
        "e2e_p50_ms": summary.e2e_ms.p50,
        "e2e_p95_ms": summary.e2e_ms.p95,
        "output_tok_s": summary.output_throughput,
    }


def compare(real: list[dict[str, float]], predicted: dict[str, float]) -> dict[str, Any]:
    """Per metric: every real value, their median, the prediction and its relative error."""
    out: dict[str, Any] = {}
    for name in (*METRICS, "output_tok_s"):
        values = [run[name] for run in real]
        median = statistics.median(values)
        out[name] = {
            "real": [round(v, 1) for v in values],
            "real_median": round(median, 1),
            "predicted": round(predicted[name], 1),
            "error": round(predicted[name] / median - 1, 4),
        }
    return out


def level_row(
    profile: EngineProfile, level: Level, runs: list[RealRun], candidate: Candidate, budget: int
) -> dict[str, Any]:
    """The prediction against the real runs, and two variants: the prediction with the
    profile's step-time jitter (the median over `JITTER_SEEDS` simulations), and, as a
    diagnostic of how much of the error is the machine's speed drifting from the profile's,
    each run's own error when its simulation's step times are rescaled by its measured speed."""
    predicted = metrics(predict(profile, level.traffic, candidate, budget))
    jittered = [metrics(predict(profile, level.traffic, candidate, budget, jitter_seed=seed))
                for seed in range(JITTER_SEEDS)]  # fmt: skip
    real = [run.metrics for run in runs]
    return {
        "load": level.load,
        "rate": round(level.traffic.rate, 4),
        **compare(real, predicted),
        "jittered": compare(
            real, {k: statistics.median(j[k] for j in jittered) for k in predicted}
        ),
        "speed_vs_profile": [round(run.speed, 3) for run in runs],
        "rescaled_errors": rescaled_errors(profile, level, runs, candidate, budget),
    }


def rescaled_errors(
    profile: EngineProfile, level: Level, runs: list[RealRun], candidate: Candidate, budget: int
) -> dict[str, float]:
    """Per metric, the median over runs of (prediction at the run's speed / the run - 1)."""
    errors: dict[str, list[float]] = {name: [] for name in METRICS}
    for run in runs:
        rescaled = replace(profile, step_time=profile.step_time.scaled(run.speed))
        predicted = metrics(predict(rescaled, level.traffic, candidate, budget))
        for name in METRICS:
            errors[name].append(predicted[name] / run.metrics[name] - 1)
    return {name: round(statistics.median(values), 4) for name, values in errors.items()}


def run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    from strata.bench.step_profile import machine, make_peer, warm_up

    report: dict[str, Any] = {"command": command, "machine": machine(),
                              "date": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    peer = make_peer(args, args.batch_window_ms)
    warm_up(peer, random.Random(0))
    workload = Workload(
        parse_length(args.prompt_len, CHAT_PROMPT, "--prompt-len"),
        parse_length(args.output_len, CHAT_OUTPUT, "--output-len"),
        seed=args.seed,
    )
    saturation = saturation_rate(peer, workload, args.max_num_seqs, args.saturation_requests)
    _log(f"saturation: {saturation:.3f} req/s")
    levels = [
        Level(load, Traffic(workload, PoissonRate(load * saturation, args.seed, i), args.requests))
        for i, load in enumerate(args.levels)
    ]
    profiler = _Profiler(peer, args)
    measured = _real_runs(peer, levels, args.repeats, profiler)
    profile = profiler.profile()
    _log(f"profile: {len(profile.steps)} steps, fit median error "
         f"{profile.step_time.median_error:.1%}")  # fmt: skip
    candidate = Candidate(args.max_num_seqs, args.batch_window_ms / 1000)
    rows = [level_row(profile, level, [run.against(profile) for run in measured[number]],
                      candidate, args.max_num_batched_tokens)
            for number, level in enumerate(levels)]  # fmt: skip
    report.update(
        engine=profile_engine_json(profile, args), workload=workload.describe(),
        requests_per_run=args.requests, repeats=args.repeats,
        saturation_rate=round(saturation, 4), levels=rows,
        load_average_end=round(os.getloadavg()[0], 1),
        plan=plan_section(profile, workload, saturation, args),
    )  # fmt: skip
    return report


class _Profiler:
    """`--profile`'s profile, or one measured on `peer`'s engine a pass at a time, between the
    rounds of real runs (`--profile-repeat` passes in all, the last ones after the last round
    when there are more passes than rounds)."""

    def __init__(self, peer: StrataPeer, args: argparse.Namespace) -> None:
        from strata.bench.step_profile import StepRecorder, default_grid

        self.peer, self.args = peer, args
        self.fixed = read_profile(args.profile) if args.profile is not None else None
        config = peer.engine.core.config
        self.grid = default_grid(config.max_num_seqs, config.max_num_batched_tokens,
                                 config.max_model_len)  # fmt: skip
        self.recorder = StepRecorder(config.block_size)
        self.rng = random.Random(f"strata-step-profile:{args.seed}")
        self.passes = 0

    def measure_pass(self) -> None:
        from strata.bench.step_profile import profile_pass

        if self.fixed is not None or self.passes >= self.args.profile_repeat:
            return
        profile_pass(self.peer, self.grid, self.rng, self.recorder)
        self.passes += 1
        _log(f"  profile pass {self.passes}/{self.args.profile_repeat}: "
             f"{len(self.recorder.steps)} steps")  # fmt: skip

    def profile(self) -> EngineProfile:
        from strata.bench.step_profile import engine_sizes

        if self.fixed is not None:
            return self.fixed
        while self.passes < self.args.profile_repeat:
            self.measure_pass()
        steps = self.recorder.steps
        profile = EngineProfile(engine_sizes(self.peer), fit_step_time(steps), steps)
        profile.write(self.args.out / "simulator-profile.json")
        return profile


def plan_section(
    profile: EngineProfile, workload: Workload, saturation: float, args: argparse.Namespace
) -> dict[str, Any]:
    """What `strata plan batching` recommends on this profile for the validated workload at
    `PLAN_LOAD` of the measured saturation rate, with the p95 TTFT SLO `--slo-ttft-ms`."""
    from strata.bench.slo import Slo
    from strata.compute.batching import plan_batching
    from strata.compute.batching_command import parse_caps, parse_windows
    from strata.compute.batching_report import batching_lines

    rate = round(PLAN_LOAD * saturation, 3)
    traffic = Traffic(workload, PoissonRate(rate, args.seed), PLAN_REQUESTS)
    candidates = [Candidate(cap, window / 1000) for cap in parse_caps(None, args.max_num_seqs)
                  for window in parse_windows("0,10,50")]  # fmt: skip
    plan = plan_batching(profile, traffic, Slo(ttft_ms=args.slo_ttft_ms), candidates,
                         args.max_num_batched_tokens)  # fmt: skip
    command = (f"strata plan batching --profile simulator-profile.json --rate {rate:g} "
               f"--prompt-tokens {workload.prompt_len.spec} --output-tokens "
               f"{workload.output_len.spec} --slo-ttft-p95-ms {args.slo_ttft_ms:g} "
               f"--requests {PLAN_REQUESTS}")  # fmt: skip
    return {"command": command, "lines": batching_lines(plan, "this run's profile")}


def _real_runs(
    peer: StrataPeer, levels: list[Level], repeats: int, profiler: _Profiler
) -> list[list[MeasuredRun]]:
    measured: list[list[MeasuredRun]] = [[] for _ in levels]
    for round_number in range(repeats):
        profiler.measure_pass()
        for number, level in enumerate(levels):
            run_id = round_number * len(levels) + number
            measured[number].append(real_run(peer, level.traffic, run_id))
            _log(f"round {round_number + 1}, load {level.load:.0%}: {measured[number][-1]}")
    return measured


@dataclass(frozen=True)
class MeasuredRun:
    metrics: dict[str, float]
    steps: list[tuple[StepShape, float]]  # every step of the run, as the profile records them

    def against(self, profile: EngineProfile) -> RealRun:
        """With its speed: the median measured / profiled step time over the run's steps."""
        model = profile.step_time
        speed = statistics.median(s / model.predict(shape) for shape, s in self.steps)
        return RealRun(self.metrics, speed)

    def __str__(self) -> str:
        values = ", ".join(f"{name} {value:.1f}" for name, value in self.metrics.items())
        return f"{values}; {len(self.steps)} steps"


def real_run(peer: StrataPeer, traffic: Traffic, run_id: int) -> MeasuredRun:
    """One real run of `traffic`, with every step it took."""
    from strata.bench.step_profile import StepRecorder

    core = peer.engine.core
    recorder = StepRecorder(core.config.block_size)
    core.step_observers.append(recorder)
    try:
        records = peer.run(real_requests(traffic, run_id, _vocab(peer)))
    finally:
        core.step_observers.remove(recorder)
    return MeasuredRun(metrics(summary_of(records)), recorder.steps)


def profile_engine_json(profile: EngineProfile, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "dtype": profile.engine.dtype,
        "threads": profile.engine.threads,
        "max_num_seqs": args.max_num_seqs,
        "max_num_batched_tokens": args.max_num_batched_tokens,
        "batch_window_ms": args.batch_window_ms,
        "profile_steps": len(profile.steps),
        "profile_median_error": round(profile.step_time.median_error, 4),
        "step_time": profile.step_time.coefficients,
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the command ---------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    from strata.bench.step_profile import add_engine_options

    parser = argparse.ArgumentParser(
        prog="strata bench simulator", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--profile", type=Path, help="use this profile instead of measuring one")
    parser.add_argument("--profile-repeat", type=int, default=3,
                        help="passes over the grid, one before each round")  # fmt: skip
    parser.add_argument("--levels", type=float, nargs="+", default=[0.3, 0.45, 0.6, 0.8])
    parser.add_argument("--repeats", type=int, default=3, help="real runs per level")
    parser.add_argument("--requests", type=int, default=50, help="requests per run")
    parser.add_argument("--saturation-requests", type=int, default=96)
    parser.add_argument("--prompt-len", default="uniform:20:120")
    parser.add_argument("--output-len", default="uniform:16:96")
    parser.add_argument("--batch-window-ms", type=float, default=0.0)
    parser.add_argument("--slo-ttft-ms", type=float, default=1000.0, help="for the plan example")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    add_engine_options(parser)
    args = parser.parse_args(argv)
    if not all(0 < level < 1 for level in args.levels) or args.repeats < 1:
        parser.error("--levels must lie in (0, 1) and --repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        report = run(args, "strata bench simulator " + " ".join(argv))
    except StrataError as exc:
        print(exc.message, file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "simulator.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "simulator.md").write_text(markdown(report))
    print((args.out / "simulator.md").read_text())


if __name__ == "__main__":
    main()
