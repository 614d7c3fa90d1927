"""One engine replica's HTTP server: `strata engine serve`'s app (`build_engine_app`), under
uvicorn on its own thread, on a free port of the node's address.

A Ray Serve engine replica holds one (`strata.deploy.replicas`); nothing here knows Ray, so the
tests run it as a plain object. The app is the same one `strata engine serve` runs: bearer
token, OpenAI routes, /healthz, /metrics.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING

import uvicorn

from strata.engine.engine import Engine
from strata.engine.outputs import EngineStats
from strata.engine.server import build_engine_app, load_or_create_engine_token
from strata.errors import ModelLoadError
from strata.telemetry.otel import EngineTelemetry, Otel

if TYPE_CHECKING:
    from fastapi import FastAPI

    from strata.config import Settings

START_TIMEOUT_S = 120.0
POLL_S = 0.05  # how often a drain looks at the engine's queue


class EngineServer:
    """The engine from `settings.engine` behind `engine_server.token`, on `host` at a port the
    OS picks. Loading the model happens in the constructor (seconds); `start()` serves,
    `stop()` ends serving and the engine loop."""

    def __init__(self, settings: Settings, host: str) -> None:
        self.engine = Engine.from_settings(settings.engine, settings.model_cache_dir, settings.slo)
        self._sock, self.url = _listening(host)
        self.otel = Otel.from_settings(settings.telemetry.otel)
        config = uvicorn.Config(self._app(settings), log_level=settings.log_level, access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True,
            name="strata-engine-http",
        )  # fmt: skip

    def _app(self, settings: Settings) -> FastAPI:
        """`strata engine serve`'s app over this engine, reporting to OpenTelemetry when on."""
        host, port = self._sock.getsockname()[:2]
        telemetry = None
        if self.otel is not None:
            telemetry = EngineTelemetry(self.otel, self.engine.model_name, (host, port))
        return build_engine_app(
            self.engine,
            load_or_create_engine_token(settings),
            telemetry=telemetry,
            instrumentation=settings.telemetry.engine_instrumentation,
        )

    @property
    def model_name(self) -> str:
        return self.engine.model_name

    @property
    def alive(self) -> bool:
        """Serving, and the engine loop running."""
        return self._thread.is_alive() and self._server.started and self.engine.is_alive

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Serve; return once the server listens (its lifespan started the engine)."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ModelLoadError(f"the engine server at {self.url} did not start")
            time.sleep(POLL_S)

    def stats(self) -> EngineStats:
        return self.engine.stats()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no request runs or waits, at most `timeout_s`; True when idle."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            stats = self.stats()
            if stats.num_running + stats.num_waiting == 0:
                return True
            if asyncio.get_running_loop().time() >= deadline:
                return False
            await asyncio.sleep(POLL_S)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop serving (uvicorn closes, the app's lifespan stops the engine)."""
        self._server.should_exit = True
        self._thread.join(timeout=timeout_s)
        self._sock.close()
        if self.otel is not None:
            self.otel.shutdown()


def _listening(host: str) -> tuple[socket.socket, str]:
    """A socket bound to a free port of `host`, and the base URL (up to /v1) it serves."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return sock, f"http://{shown}:{sock.getsockname()[1]}/v1"
