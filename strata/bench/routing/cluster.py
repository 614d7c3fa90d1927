"""The engine servers of a routing run: `strata engine serve` processes on loopback ports."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from strata.bench.server_process import free_port, launched, wait_healthy

STRATA = Path(sys.executable).parent / "strata"
MODEL = "model"
TOKEN = "routing-bench-token"
START_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class EngineConfig:
    """What every engine of the run is started with."""

    folder: Path  # the model folder (resolved once, so no engine converts a GGUF itself)
    kv_cache_memory: str = "64MiB"
    max_model_len: int = 2048
    threads: int = 1


@contextmanager
def engines(config: EngineConfig, workdir: Path, count: int = 2) -> Iterator[list[str]]:
    """`count` engine servers; yields their base URLs up to /v1, stops them on exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    with ExitStack() as stack:
        yield [stack.enter_context(_engine(config, workdir / f"engine-{i}", env))
               for i in range(count)]  # fmt: skip


@contextmanager
def _engine(config: EngineConfig, data_dir: Path, env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    engine_env = {
        **env,
        "STRATA_DATA_DIR": str(data_dir),
        "STRATA_ENGINE__THREADS": str(config.threads),
        "STRATA_ENGINE__KV_CACHE_MEMORY": config.kv_cache_memory,
        "STRATA_ENGINE__MAX_MODEL_LEN": str(config.max_model_len),
        "STRATA_ENGINE_SERVER__TOKEN": TOKEN,
    }
    args = [str(STRATA), "engine", "serve", "--port", str(port), "--served-model-name", MODEL,
            "--model", str(config.folder)]  # fmt: skip
    data_dir.mkdir(parents=True, exist_ok=True)
    with launched(args, data_dir.with_suffix(".log"), engine_env) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, timeout_s=START_TIMEOUT_S)
        yield f"{url}/v1"
