"""`strata deploy ray`: the configuration `strata serve` reads, run on a Ray cluster.

Ray is imported only once the settings check out, so `--help` and a bad setting answer at once,
and a machine without Ray gets one line saying how to install it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import psycopg
import typer

from strata.cli_options import EXIT_BAD_INPUT, EXIT_FAILED, ConfigOption, settings_from
from strata.cli_output import fail
from strata.config import EnginePoolSettings, Settings
from strata.deploy.plan import ClusterPlan
from strata.errors import ClusterError, ConfigError, StrataError

deploy_app = typer.Typer(
    help="Run strata on a cluster teams already operate (Ray Serve), with the same config file.",
    no_args_is_help=True,
)

INSTALL_HINT = "Ray is not installed here: pip install 'strata[ray]' (ray[serve]==2.60.0)."


@deploy_app.command("ray")
def deploy_ray(
    config: ConfigOption = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="The Ray cluster: 'auto' (the one this node joined), HOST:PORT of the head's "
            "GCS, or ray://HOST:10001. Default deploy.ray.address; if that is empty too, Ray "
            "starts inside this command (one machine) and stops with it.",
            show_default=False,
        ),
    ] = None,
    replicas: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1000,
            help="Engine replicas per pool, fixed (sets min_replicas = max_replicas). To "
            "autoscale, set deploy.ray.engines[].min_replicas < max_replicas instead.",
            show_default=False,
        ),
    ] = None,
    gateway_replicas: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=1000,
            help="Gateway replicas (default deploy.ray.gateway_replicas: 2).",
            show_default=False,
        ),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            help="Port of Ray Serve's HTTP proxy, the public API "
            "(default deploy.ray.http_port: 8000).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Deploy engine replicas (one Ray Serve deployment per deploy.ray.engines pool,
    autoscaled on queue depth and SLO attainment) and gateway replicas in front of them.
    Needs store.dsn (a PostgreSQL with pgvector) and redis_url, which every replica shares.
    Joined to a cluster by --address, the command returns once everything answers; with Ray
    started here, it serves until Ctrl-C."""
    settings = _settings(config, address, replicas, gateway_replicas, http_port)
    try:
        plan = ClusterPlan.from_settings(settings)
    except ConfigError as exc:
        fail(exc.message, EXIT_BAD_INPUT)
    logging.basicConfig(level=settings.log_level.upper())
    _bootstrap_admin_key(settings)
    _deploy(plan)


def _deploy(plan: ClusterPlan) -> None:
    try:
        from strata.deploy.cluster import RayCluster
    except ImportError:
        fail(INSTALL_HINT, EXIT_FAILED)
    where = plan.ray
    try:
        cluster = RayCluster.connect(where.address, where.namespace)
    except ClusterError as exc:
        fail(exc.message, EXIT_FAILED)
    try:
        deployed = cluster.deploy(plan, where.http_host, where.http_port)
    except ClusterError as exc:
        cluster.shutdown()
        fail(exc.message, EXIT_FAILED)
    typer.echo(f"strata on Ray: serving {', '.join(deployed.models)} at {deployed.url}")
    if cluster.started_here:
        _serve_until_interrupted(cluster.shutdown)
    else:
        cluster.shutdown()  # disconnects; the applications keep running on the cluster


def _settings(
    config: Path | None,
    address: str | None,
    replicas: int | None,
    gateway_replicas: int | None,
    http_port: int | None,
) -> Settings:
    """The settings file with the options applied; a bad value exits with status 2."""
    try:
        settings = settings_from(config)
        ray = settings.deploy.ray
        if address is not None:
            ray.address = address
        if gateway_replicas is not None:
            ray.gateway_replicas = gateway_replicas
        if http_port is not None:
            ray.http_port = http_port
        if replicas is not None:
            ray.engines = [_fixed(pool, replicas) for pool in ray.engines]
    except ConfigError as exc:
        fail(exc.message, EXIT_BAD_INPUT)
    return settings


def _bootstrap_admin_key(settings: Settings) -> None:
    """The store migrated and, on first deploy, the first admin key printed once (as `strata
    serve` does), before any replica starts: a replica would make one nobody ever sees."""
    from strata.gateway.identity import IssuedKey, KeyStore
    from strata.store.database import Database

    async def bootstrap() -> IssuedKey | None:
        async with Database(settings, pool_size=1) as database:
            return await KeyStore(database.pool).ensure_bootstrap_admin()

    try:
        issued = asyncio.run(bootstrap())
    except StrataError as exc:
        fail(exc.message, EXIT_FAILED)
    except psycopg.Error as exc:
        fail(f"store.dsn: PostgreSQL: {str(exc).strip().splitlines()[0]}", EXIT_FAILED)
    if issued is not None:
        typer.secho(f"  first admin key (shown once; store it now): {issued.key}", fg="yellow")


def _fixed(pool: EnginePoolSettings, replicas: int) -> EnginePoolSettings:
    return pool.model_copy(update={"min_replicas": replicas, "max_replicas": replicas})


def _serve_until_interrupted(stop: Callable[[], None]) -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM (a service manager), then `stop()`. The
    handlers are set after Ray's, which logs a SIGTERM without ending the process."""
    typer.echo("  Ray runs inside this command: Ctrl-C stops it.")
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        stopping.wait()
        typer.echo("stopping")
    finally:
        stop()
