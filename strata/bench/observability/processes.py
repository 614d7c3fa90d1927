"""The servers an observability run starts, as child processes with settings of their own:
the twin engine server (`twin.py`) and a gateway with its built-in engine (`strata serve`).

Each child gets a generated config file and an environment without the caller's `STRATA_*`
variables, so nothing of the user's setup leaks in; the model is the same converted folder
for both, resolved once here (converting the bundled GGUF takes about a minute the first time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

from strata.bench.client import Target
from strata.bench.observability.twin import TOKEN_ENV
from strata.bench.server_process import free_port, launched, wait_healthy
from strata.config import load_settings
from strata.engine.loader import resolve_model_folder
from strata.errors import BenchTargetError
from strata.store.database import EmbeddedServer

STRATA = Path(sys.executable).parent / "strata"
START_TIMEOUT_S = 300.0
LOG_TAIL_CHARS = 2000  # of a child's log, shown when it fails to start
LEDGER_TIMEOUT_S = 30.0  # the gateway writes its ledger in batches, every 100 ms by default


def model_folder(model: Path | None) -> Path:
    """`model` (a folder or .gguf), else the configured or bundled one, as a converted folder
    in this user's model cache."""
    settings = load_settings()
    spec = str(model) if model is not None else settings.engine.model
    return resolve_model_folder(spec, settings.model_cache_dir)


@dataclass(frozen=True)
class Twin:
    """The twin engine server: one arm per instrumentation setting, under `/<arm>`."""

    url: str
    token: str
    arms: tuple[str, ...]

    def target(self, arm: str) -> Target:
        return Target(f"{self.url}/{arm}/v1", api_key=self.token)

    def scrape(self, arm: str) -> str:
        return _scrape(f"{self.url}/{arm}/metrics", self.token)


@contextmanager
def twin_server(engine: dict[str, Any], workdir: Path, otel_endpoint: str | None) -> Iterator[Twin]:
    """The twin server with `engine` settings; the `otel` arm when `otel_endpoint` is given."""
    token = "observability-bench-token"
    config = _config(workdir / "twin.yaml", {"data_dir": str(workdir / "twin"), "engine": engine})
    env = {**_clean_env(), "STRATA_CONFIG": str(config), TOKEN_ENV: token}
    port = free_port()
    args = [sys.executable, "-m", "strata.bench.observability.twin", "--port", str(port)]
    if otel_endpoint is not None:
        args += ["--otel-endpoint", otel_endpoint]
    with launched(args, workdir / "twin.log", env) as proc:
        url = f"http://127.0.0.1:{port}"
        _wait_started(url, proc, workdir / "twin.log")
        arms = ("off", "on", "otel") if otel_endpoint is not None else ("off", "on")
        yield Twin(url, token, arms)


@dataclass(frozen=True)
class Gateway:
    """`strata serve` with its built-in engine, and an admin key for it."""

    url: str
    key: str
    data_dir: Path

    @property
    def target(self) -> Target:
        return Target(f"{self.url}/v1", api_key=self.key)

    def scrape(self) -> str:
        return _scrape(f"{self.url}/metrics", self.key)

    def ledger_ttft_ms(self, request_ids: Collection[str]) -> dict[str, float | None]:
        """The usage ledger's `ttft_ms` of each request id, once every one has been written."""
        server = EmbeddedServer.attach(self.data_dir / "postgres")  # the gateway's, running
        deadline = time.monotonic() + LEDGER_TIMEOUT_S
        with psycopg.connect(server.conninfo, autocommit=True) as conn:
            while True:
                rows = conn.execute(
                    "SELECT request_id, ttft_ms FROM usage_ledger WHERE request_id = ANY(%s)",
                    (list(request_ids),),
                ).fetchall()
                if len(rows) >= len(request_ids) or time.monotonic() > deadline:
                    return {str(rid): ttft for rid, ttft in rows}
                time.sleep(0.2)


@contextmanager
def gateway(engine: dict[str, Any], workdir: Path, otel_endpoint: str | None) -> Iterator[Gateway]:
    """A gateway on a free port serving `engine` in-process, with the default gateway settings
    otherwise (guard, limits, ledger); traces go to `otel_endpoint` when given."""
    data_dir = workdir / "gateway"
    settings: dict[str, Any] = {
        "data_dir": str(data_dir),
        "server": {"port": free_port()},
        "engine": engine,
    }
    if otel_endpoint is not None:
        settings["telemetry"] = {"otel": {"traces": True, "endpoint": otel_endpoint}}
    config = _config(workdir / "gateway.yaml", settings)
    env = _clean_env()
    with launched([str(STRATA), "serve", "--config", str(config)], workdir / "gateway.log",
                  env) as proc:  # fmt: skip
        url = f"http://127.0.0.1:{settings['server']['port']}"
        _wait_started(url, proc, workdir / "gateway.log")
        yield Gateway(url, _admin_key(config, env), data_dir)


def _wait_started(
    url: str, proc: subprocess.Popen[bytes], log: Path, path: str = "/healthz"
) -> None:
    try:
        wait_healthy(url, proc, START_TIMEOUT_S, path)
    except RuntimeError as exc:
        tail = log.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        raise BenchTargetError(f"{exc}; the end of its log ({log.name}):\n{tail}") from None


def _admin_key(config: Path, env: dict[str, str]) -> str:
    made = subprocess.run(
        [str(STRATA), "keys", "create", "--config", str(config), "--tenant", "bench",
         "--user", "bench", "--role", "admin", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    key: str = json.loads(made.stdout)["key"]
    return key


def _scrape(url: str, token: str) -> str:
    reply = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    if reply.status_code != 200:
        raise BenchTargetError(f"{url}: {reply.status_code} {reply.text[:200]}")
    return reply.text


def _config(path: Path, settings: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"log_level": "warning", **settings}))
    return path


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
