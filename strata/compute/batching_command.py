"""`strata plan batching`: a measured step-time profile, traffic and a p95 SLO in; predicted
latencies and throughput per batch cap and batching window, and the recommendation, out.

The simulator and the load generator's definitions it reuses (workloads, arrivals, SLOs, the
rate search) are imported when the command runs, so `strata --help` does not pay for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from strata.cli_options import EXIT_BAD_INPUT, JsonOption
from strata.compute.cli_common import emit, fail
from strata.errors import ConfigError

if TYPE_CHECKING:
    from strata.bench.shapes import ConstantRate, PoissonRate
    from strata.bench.workload import Workload
    from strata.compute.profile import EngineProfile

DEFAULT_WINDOWS_MS = "0,10,50"


def batching(
    profile: Annotated[Path, typer.Option(
        help="A step-time profile: `strata bench engine --profile FILE` writes one.",
        dir_okay=False)],
    rate: Annotated[float, typer.Option(help="Offered load: requests per second.")],
    slo_ttft_p95_ms: Annotated[float, typer.Option(help="SLO: p95 time to first token (ms).")],
    slo_e2e_p95_ms: Annotated[float | None, typer.Option(
        help="SLO: p95 end-to-end latency (ms), if it has one.")] = None,
    prompt_tokens: Annotated[str, typer.Option(
        help="Prompt tokens as the engine sees them: N, uniform:MIN:MAX, "
        "lognormal:MEDIAN:SIGMA:MIN:MAX or chat (as `strata bench serve --prompt-len`).")] = "128",
    output_tokens: Annotated[str, typer.Option(help="Output tokens, same forms.")] = "128",
    shared_prefix_tokens: Annotated[int, typer.Option(
        help="Leading prompt tokens all requests share (served by the prefix cache).")] = 0,
    arrivals: Annotated[str, typer.Option(
        help="poisson (independent arrivals) or constant (evenly spaced).")] = "poisson",
    requests: Annotated[int, typer.Option(help="Requests to simulate per run.")] = 300,
    seed: Annotated[int, typer.Option(help="Fixes lengths and arrival times.")] = 0,
    caps: Annotated[str | None, typer.Option(
        help="Batch caps to try, e.g. 4,8,16,32 (default: powers of two up to the profile's "
        "max_num_seqs).", show_default=False)] = None,
    windows_ms: Annotated[str, typer.Option(
        help="Batching windows to try (ms), e.g. 0,10,50.")] = DEFAULT_WINDOWS_MS,
    token_budget: Annotated[int | None, typer.Option(
        help="Tokens per step (default: the profile's max_num_batched_tokens).",
        show_default=False)] = None,
    as_json: JsonOption = False,
) -> None:  # fmt: skip
    """Simulate strata's scheduler on measured step times: p50/p95 TTFT and end-to-end latency
    and throughput for each batch cap and batching window, and the cap and window that serve
    the most traffic within the p95 SLO."""
    from strata.bench.slo import Slo
    from strata.bench.workload import CHAT_OUTPUT, CHAT_PROMPT, Workload, parse_length
    from strata.compute.batching import Candidate, Traffic, plan_batching
    from strata.compute.batching_report import batching_json, batching_lines
    from strata.compute.profile import read_profile

    try:
        loaded = read_profile(profile)
        workload = Workload(
            parse_length(prompt_tokens, CHAT_PROMPT, "--prompt-tokens"),
            parse_length(output_tokens, CHAT_OUTPUT, "--output-tokens"),
            _non_negative(shared_prefix_tokens, "--shared-prefix-tokens"),
            seed,
        )
        _check_context(workload, loaded)
        shape = _arrivals(arrivals, rate, seed)
        slo = Slo(ttft_ms=_positive(slo_ttft_p95_ms, "--slo-ttft-p95-ms"),
                  e2e_ms=None if slo_e2e_p95_ms is None
                  else _positive(slo_e2e_p95_ms, "--slo-e2e-p95-ms"))  # fmt: skip
        budget = loaded.engine.max_num_batched_tokens if token_budget is None else token_budget
        candidates = [
            Candidate(cap, window / 1000)
            for cap in parse_caps(caps, loaded.engine.max_num_seqs)
            for window in parse_windows(windows_ms)
        ]
        plan = plan_batching(loaded, Traffic(workload, shape, requests), slo, candidates,
                             _at_least_one(budget, "--token-budget"))  # fmt: skip
    except ConfigError as exc:
        fail(exc.message, EXIT_BAD_INPUT)
    note = profile_note(profile, loaded)
    emit(batching_json(plan, {"path": str(profile), **loaded.to_json()["engine"]}),
         batching_lines(plan, note), as_json)  # fmt: skip


def profile_note(path: Path, profile: EngineProfile) -> str:
    e, meta = profile.engine, profile.meta
    when = f", measured {meta['date']}" if "date" in meta else ""
    return (
        f"{path} ({e.dtype}, {e.threads} threads{when}; {len(profile.steps)} steps, fit median "
        f"error {profile.step_time.median_error:.0%})"
    )


def parse_caps(text: str | None, profile_cap: int) -> list[int]:
    if text is None:
        return sorted({2**k for k in range(1, 12) if 2**k < profile_cap} | {profile_cap})
    values = _numbers(text, "--caps", "4,8,16,32")
    if not all(v.is_integer() and v >= 1 for v in values):
        raise ConfigError(f"--caps {text!r}: every cap must be a whole number >= 1, e.g. 4,8,16,32")
    return sorted({int(v) for v in values})


def parse_windows(text: str) -> list[float]:
    values = _numbers(text, "--windows-ms", "0,10,50")
    if not all(0 <= v <= 10_000 for v in values):
        raise ConfigError(f"--windows-ms {text!r}: every window must be 0-10000 ms, e.g. 0,10,50")
    return sorted(set(values))


def _numbers(text: str, option: str, example: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"{option} {text!r}: give comma-separated numbers, e.g. {example}"
        ) from None
    if not values:
        raise ConfigError(f"{option} {text!r}: give at least one value, e.g. {example}")
    return values


def _arrivals(kind: str, rate: float, seed: int) -> PoissonRate | ConstantRate:
    from strata.bench.shapes import ConstantRate, PoissonRate

    if not rate > 0:
        raise ConfigError(f"--rate {rate:g}: must be > 0 requests per second")
    if kind == "poisson":
        return PoissonRate(rate, seed)
    if kind == "constant":
        return ConstantRate(rate)
    raise ConfigError(f"--arrivals {kind!r}: use poisson or constant")


def _check_context(workload: Workload, profile: EngineProfile) -> None:
    longest = (workload.shared_prefix_tokens + workload.prompt_len.bounds[1]
               + workload.output_len.bounds[1])  # fmt: skip
    limit = profile.engine.max_model_len
    if longest > limit:
        raise ConfigError(
            f"--output-tokens: the longest prompt plus output is {longest} tokens, over the "
            f"profiled engine's max_model_len {limit}; lower the maximum of --prompt-tokens "
            "or --output-tokens"
        )


def _positive(value: float, option: str) -> float:
    if not value > 0:
        raise ConfigError(f"{option} {value:g}: must be > 0")
    return value


def _non_negative(value: int, option: str) -> int:
    if value < 0:
        raise ConfigError(f"{option} {value}: must be >= 0")
    return value


def _at_least_one(value: int, option: str) -> int:
    if value < 1:
        raise ConfigError(f"{option} {value}: must be >= 1")
    return value
