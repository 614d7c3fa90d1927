"""A real engine HTTP server for tests: uvicorn on a free loopback port, serving a tiny model."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import openai
import uvicorn

from strata.config import EngineSettings
from strata.engine.engine import Engine
from strata.engine.server import build_engine_app

TOKEN = "test-token-123"
MODEL = "tiny"


class LiveServer:
    """uvicorn serving `app` on a free loopback port from a background thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(build_engine_app(engine, TOKEN), log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    def client(self, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=TOKEN, max_retries=0, **kw)

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=TOKEN, max_retries=0)

    def wait_idle(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            stats = self.engine.stats()
            if stats.num_running == 0 and stats.num_waiting == 0:
                return
            assert time.monotonic() < deadline, f"engine still busy: {stats}"
            time.sleep(0.02)


def make_engine(folder: Path, cache: Path, **overrides: Any) -> Engine:
    settings = EngineSettings.model_validate(
        {
            "model": str(folder),
            "served_model_name": MODEL,
            "max_model_len": 256,
            "kv_cache_memory": "8MiB",
            **overrides,
        }
    )
    return Engine.from_settings(settings, cache)
