"""One engine behind several copies of its HTTP app, each with its instrumentation set one way,
on one port: `/off/v1/...` records nothing, `/on/v1/...` records the Prometheus metrics, and
`/otel/v1/...` (with `--otel-endpoint`) also reports to OpenTelemetry over OTLP.

All arms share the engine, the process, the event loop and the warm caches, so the only thing
that differs between two runs on different arms is the recording itself. The settings come
from the environment (`STRATA_CONFIG`), the bearer token from `$STRATA_BENCH_ENGINE_TOKEN`;
`GET /healthz` (no token) answers 200 while the engine loop runs.

    python -m strata.bench.observability.twin --port 8411 [--otel-endpoint http://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from strata.config import OtelSettings, load_settings
from strata.engine.engine import Engine
from strata.engine.server import build_engine_app
from strata.telemetry.otel import EngineTelemetry, Otel

TOKEN_ENV = "STRATA_BENCH_ENGINE_TOKEN"
HOST = "127.0.0.1"
OFF, ON, OTEL = "off", "on", "otel"


def twin_app(engine: Engine, token: str, otel: Otel | None) -> Starlette:
    """The arms mounted side by side; the app's lifespan runs the shared engine."""
    arms = {
        OFF: build_engine_app(engine, token, manage_engine=False, instrumentation=False),
        ON: build_engine_app(engine, token, manage_engine=False),
    }
    if otel is not None:
        telemetry = EngineTelemetry(otel, engine.model_name)
        arms[OTEL] = build_engine_app(engine, token, manage_engine=False, telemetry=telemetry)
    routes: list[BaseRoute] = [Route("/healthz", _health(engine))]
    routes += [Mount(f"/{name}", app) for name, app in arms.items()]
    return Starlette(routes=routes, lifespan=_running(engine, otel))


def _health(engine: Engine) -> Callable[[Request], Awaitable[Response]]:
    async def healthz(request: Request) -> Response:
        return Response(status_code=200 if engine.is_alive else 503)

    return healthz


def _running(
    engine: Engine, otel: Otel | None
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """Starts the engine; on the way out stops it and flushes OpenTelemetry. (Here, not after
    uvicorn returns: uvicorn re-raises the SIGTERM it stopped on, which ends the process.)"""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()
            if otel is not None:
                await asyncio.to_thread(otel.shutdown)  # exports what is still buffered

    return lifespan


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m strata.bench.observability.twin")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--otel-endpoint", help="OTLP/HTTP collector; adds the `otel` arm")
    args = parser.parse_args(argv)
    settings = load_settings()
    engine = Engine.from_settings(settings.engine, settings.model_cache_dir, settings.slo)
    otel = None
    if args.otel_endpoint:
        otel = Otel.from_settings(
            OtelSettings(traces=True, metrics=True, endpoint=args.otel_endpoint)
        )
    app = twin_app(engine, os.environ[TOKEN_ENV], otel)
    config = uvicorn.Config(app, host=HOST, port=args.port, log_level="warning",
                            loop="uvloop", http="httptools", access_log=False)  # fmt: skip
    uvicorn.Server(config).run()  # as `strata engine serve` runs its app


if __name__ == "__main__":
    main()
