"""`strata bench serve`: load any OpenAI-compatible endpoint; report latency, throughput, goodput.

The command only turns options into the library's objects (`Target`, `Workload`, a
`LoadShape`, `Budget`, `Slo`), runs `run_load` or `run_sweep`, and writes the report. It is
registered on the `bench` group in `strata.cli`; the library is imported only when it runs, so
`strata --help` stays fast. Exit status: 0 after a report, 1 when the target cannot be used or
no request succeeded (the report is still written), 2 for bad options.
"""

from __future__ import annotations

import asyncio
import shlex
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer.core import TyperOption

from strata.cli_output import fail

if TYPE_CHECKING:
    from strata.bench.client import Target
    from strata.bench.report import Report
    from strata.bench.shapes import Budget, LoadShape
    from strata.bench.slo import Slo
    from strata.bench.sweep import SweepPlan
    from strata.bench.workload import Workload

EXIT_BAD_OPTIONS = 2
EXIT_FAILED = 1
DEFAULT_REQUESTS = 100
SWEEP_DEFAULT_DURATION_S = 60.0  # per probe, so low rates cannot run for hours
SECRET_OPTIONS = frozenset({"api_key"})


class EndpointName(StrEnum):
    chat = "chat"
    completions = "completions"


def bench_serve(
    ctx: typer.Context,
    url: Annotated[
        str,
        typer.Option(help="Base URL of the OpenAI-compatible API, e.g. http://127.0.0.1:8400/v1."),
    ],
    api_key: Annotated[
        str | None,
        typer.Option(envvar="STRATA_BENCH_API_KEY", help="Bearer token.", show_default=False),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(dir_okay=False, help="File holding the token, e.g. .strata/engine.token."),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="Model to ask for (default: the first one /models lists).")
    ] = None,
    endpoint: Annotated[EndpointName, typer.Option(help="API to call.")] = EndpointName.chat,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Closed loop: this many clients, each one request at a time."),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            help="Open loop: requests per second (with --sweep: the first rate probed, default 1).",
        ),
    ] = None,
    poisson: Annotated[
        bool, typer.Option("--poisson", help="With --rate: Poisson arrivals, not evenly spaced.")
    ] = False,
    sweep: Annotated[
        bool,
        typer.Option("--sweep", help="Find the highest Poisson rate that holds the SLO."),
    ] = False,
    requests: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many requests (each sweep probe).")
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            help="Stop sending after this many seconds (each sweep probe; default there 60).",
        ),
    ] = None,
    prompt_len: Annotated[
        str,
        typer.Option(
            help="Prompt tokens: N, uniform:MIN:MAX, lognormal:MEDIAN:SIGMA:MIN:MAX or chat."
        ),
    ] = "128",
    output_len: Annotated[str, typer.Option(help="Output tokens, same forms.")] = "128",
    shared_prefix_tokens: Annotated[
        int, typer.Option(min=0, help="A system prompt of this many tokens shared by all.")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Fixes prompts, lengths and arrival times.")] = 0,
    warmup: Annotated[
        int, typer.Option(min=0, help="Unmeasured requests sent first, all at once.")
    ] = 0,
    slo_ttft_ms: Annotated[float | None, typer.Option(help="SLO: p95 TTFT (ms).")] = None,
    slo_itl_ms: Annotated[float | None, typer.Option(help="SLO: p95 inter-token (ms).")] = None,
    slo_e2e_ms: Annotated[float | None, typer.Option(help="SLO: p95 end-to-end (ms).")] = None,
    sweep_max_rate: Annotated[float, typer.Option(help="Highest rate a sweep probes.")] = 256.0,
    sweep_steps: Annotated[
        int, typer.Option(min=0, help="Bisection probes once a sweep has bracketed the answer.")
    ] = 4,
    timeout: Annotated[float, typer.Option(help="Per-request timeout (s).")] = 300.0,
    no_ignore_eos: Annotated[
        bool,
        typer.Option(
            "--no-ignore-eos",
            help="Do not send ignore_eos/min_tokens (servers that "
            "reject unknown fields); outputs may then end early.",
        ),
    ] = False,
    name: Annotated[
        str | None, typer.Option(help="Report name (default: the load shape, e.g. concurrency-8).")
    ] = None,
    out: Annotated[
        Path, typer.Option(file_okay=False, help="Folder for serve-<name>.json and .md.")
    ] = Path("docs/benchmarks"),
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bar on stderr.")
    ] = False,
) -> None:
    """Benchmark an OpenAI-compatible endpoint (strata, a gateway, vLLM) with streamed
    requests: TTFT, inter-token latency, end-to-end latency, throughput and goodput, at a fixed
    concurrency, a fixed rate, or the highest rate that holds an SLO (--sweep)."""
    from strata.bench.client import ENDPOINTS, Target
    from strata.bench.workload import CHAT_OUTPUT, CHAT_PROMPT, Workload, parse_length
    from strata.errors import BenchTargetError, ConfigError

    try:
        target = Target(
            url,
            _api_key(api_key, api_key_file),
            model,
            endpoint=ENDPOINTS[endpoint.value],
            ignore_eos=not no_ignore_eos,
            timeout_s=timeout,
        )
        workload = Workload(
            parse_length(prompt_len, CHAT_PROMPT, "--prompt-len"),
            parse_length(output_len, CHAT_OUTPUT, "--output-len"),
            shared_prefix_tokens,
            seed,
        )
        slo = _slo(slo_ttft_ms, slo_itl_ms, slo_e2e_ms)
        job = _Job(
            command_line(ctx),
            target,
            workload,
            slo,
            _budget(requests, duration, sweep),
            warmup,
            not no_progress,
        )
        if sweep:
            report = _run_sweep(
                job, _sweep_plan(rate, sweep_max_rate, sweep_steps, concurrency), name
            )
        else:
            report = _run_load(job, _shape(concurrency, rate, poisson, seed), name)
    except ConfigError as exc:
        fail(exc.message, EXIT_BAD_OPTIONS)
    except BenchTargetError as exc:
        fail(exc.message, EXIT_FAILED)
    _finish(report, out)


@dataclass(frozen=True)
class _Job:
    """What every run of the command shares, whatever its load shape."""

    command: str
    target: Target
    workload: Workload
    slo: Slo | None
    budget: Budget
    warmup: int
    progress: bool


def _run_load(job: _Job, shape: LoadShape, name: str | None) -> Report:
    from strata.bench.loadgen import run_load
    from strata.bench.progress import ProgressBars
    from strata.bench.report import load_report

    bars = ProgressBars(job.progress).start(shape.label, job.budget.requests)
    try:
        run = run_load(
            job.target,
            job.workload,
            shape,
            job.slo,
            budget=job.budget,
            warmup=job.warmup,
            on_done=bars,
        )
        result = asyncio.run(run)
    finally:
        bars.close()
    return load_report(result, job.command, name or shape.name)


def _run_sweep(job: _Job, plan: SweepPlan, name: str | None) -> Report:
    from strata.bench.progress import ProgressBars
    from strata.bench.report import sweep_report
    from strata.bench.sweep import run_sweep
    from strata.errors import ConfigError

    if job.slo is None:
        raise ConfigError("--sweep needs an SLO: --slo-ttft-ms, --slo-itl-ms and/or --slo-e2e-ms")
    bars = ProgressBars(job.progress)

    def on_probe(rate: float) -> ProgressBars:
        return bars.start(f"sweep: {rate:.3g} req/s", job.budget.requests)

    try:
        run = run_sweep(job.target, job.workload, job.slo, plan, job.budget, on_probe, job.warmup)
        sweep = asyncio.run(run)
    finally:
        bars.close()
    return sweep_report(sweep, job.command, name or "sweep")


def _finish(report: Report, out: Path) -> None:
    json_path, md_path = report.write(out)
    typer.echo(report.markdown, nl=False)
    typer.echo(f"wrote {json_path} and {md_path}", err=True)
    if not report.any_succeeded:
        fail("no request succeeded: see the errors table", EXIT_FAILED)


def command_line(ctx: typer.Context) -> str:
    """The command as given on the command line (options in declaration order), secrets as
    `***`. Options from the environment or defaults are left out: the report lists those."""
    words = ctx.command_path.split()
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name) if param.name else None
        if source is not None and source.name == "COMMANDLINE":
            words += _option_words(param, ctx.params[param.name])
    return shlex.join(words)


def _option_words(param: object, value: object) -> list[str]:
    assert isinstance(param, TyperOption)  # the command has options only
    if param.is_flag:
        return [param.opts[0] if value else param.secondary_opts[0]]
    return [param.opts[0], "***" if param.name in SECRET_OPTIONS else _shown(value)]


def _shown(value: object) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float) and float(f"{value:g}") == value:
        return f"{value:g}"  # 4, not 4.0: as it was most likely typed
    return str(value)


def _api_key(api_key: str | None, api_key_file: Path | None) -> str | None:
    from strata.errors import ConfigError

    if api_key is not None or api_key_file is None:
        return api_key
    try:
        return api_key_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"--api-key-file {api_key_file}: {exc.strerror}") from None


def _slo(ttft_ms: float | None, itl_ms: float | None, e2e_ms: float | None) -> Slo | None:
    from strata.bench.slo import Slo

    if ttft_ms is None and itl_ms is None and e2e_ms is None:
        return None
    return Slo(ttft_ms, itl_ms, e2e_ms)


def _budget(requests: int | None, duration: float | None, sweep: bool) -> Budget:
    from strata.bench.shapes import Budget

    if requests is None and duration is None:
        requests = DEFAULT_REQUESTS
    if sweep and duration is None:
        duration = SWEEP_DEFAULT_DURATION_S
    return Budget(requests, duration)


def _shape(concurrency: int | None, rate: float | None, poisson: bool, seed: int) -> LoadShape:
    from strata.bench.shapes import ConstantRate, FixedConcurrency, PoissonRate
    from strata.errors import ConfigError

    if (concurrency is None) == (rate is None):
        raise ConfigError("give exactly one of --concurrency N, --rate R or --sweep")
    if concurrency is not None:
        if poisson:
            raise ConfigError("--poisson goes with --rate, not --concurrency")
        return FixedConcurrency(concurrency)
    assert rate is not None
    return PoissonRate(rate, seed) if poisson else ConstantRate(rate)


def _sweep_plan(
    start: float | None, max_rate: float, steps: int, concurrency: int | None
) -> SweepPlan:
    from strata.bench.sweep import SweepPlan
    from strata.errors import ConfigError

    if concurrency is not None:
        raise ConfigError("--sweep varies the Poisson rate; it does not take --concurrency")
    start = start or 1.0
    return SweepPlan(start, max(max_rate, start), min_rate=start / 16, refine_steps=steps)
