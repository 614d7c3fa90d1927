"""The processes of a failover run: two engine servers and a gateway in front of them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from strata.bench.server_process import free_port, launched, wait_healthy

STRATA = Path(sys.executable).parent / "strata"
MODEL = "model"
TOKEN_ENV = "STRATA_BENCH_ENGINE_TOKEN"
START_TIMEOUT_S = 180.0


@dataclass
class Cluster:
    gateway_url: str
    key: str
    engines: dict[str, subprocess.Popen[bytes]]  # upstream name -> engine server

    def kill(self, name: str) -> None:
        """SIGKILL: the replica vanishes without a word, as a reclaimed spot VM does."""
        self.engines[name].send_signal(signal.SIGKILL)
        self.engines[name].wait(timeout=10)


@contextmanager
def cluster(model: Path | None, workdir: Path, threads: int = 1) -> Iterator[Cluster]:
    """Engine servers `spot` and `on-demand` and a gateway routing `model` to them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env[TOKEN_ENV] = "failover-bench-token"
    with ExitStack() as stack:
        engines = {
            name: stack.enter_context(_engine(model, workdir / name, env, threads))
            for name in ("spot", "on-demand")
        }
        urls = {name: url for name, (_, url) in engines.items()}
        config = _gateway_config(workdir, urls)
        gateway = stack.enter_context(_gateway(config, workdir, env))
        yield Cluster(gateway, _key(config, env), {n: p for n, (p, _) in engines.items()})


@contextmanager
def _engine(
    model: Path | None, data_dir: Path, env: dict[str, str], threads: int
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    engine_env = {**env, "STRATA_DATA_DIR": str(data_dir), "STRATA_ENGINE__THREADS": str(threads),
                  "STRATA_ENGINE_SERVER__TOKEN": env[TOKEN_ENV]}  # fmt: skip
    args = [str(STRATA), "engine", "serve", "--port", str(port), "--served-model-name", MODEL]
    if model is not None:
        args += ["--model", str(model)]
    with _running(args, engine_env, data_dir.with_suffix(".log")) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, timeout_s=START_TIMEOUT_S)
        yield proc, f"{url}/v1"


def _gateway_config(workdir: Path, urls: dict[str, str]) -> Path:
    upstreams = [
        {"name": name, "url": url, "models": [MODEL], "tier": name, "api_key_env": TOKEN_ENV}
        for name, url in urls.items()
    ]
    settings = {
        "data_dir": str(workdir / "gateway"),
        "server": {"port": free_port()},
        "gateway": {"engine": False},
        "upstreams": upstreams,
        "routing": {"backoff_ms": 10, "health_interval_s": 1.0},
    }
    path = workdir / "strata.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@contextmanager
def _gateway(config: Path, workdir: Path, env: dict[str, str]) -> Iterator[str]:
    port = yaml.safe_load(config.read_text())["server"]["port"]
    args = [str(STRATA), "serve", "--config", str(config)]
    with _running(args, env, workdir / "gateway.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, timeout_s=START_TIMEOUT_S)
        yield url


def _key(config: Path, env: dict[str, str]) -> str:
    made = subprocess.run(
        [str(STRATA), "keys", "create", "--config", str(config), "--tenant", "bench",
         "--user", "bench", "--role", "admin", "--json"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    key: str = json.loads(made.stdout)["key"]
    return key


@contextmanager
def _running(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with launched(args, log, env) as proc:
        yield proc
