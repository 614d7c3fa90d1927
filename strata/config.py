"""One typed settings tree for all of strata.

Sources, highest priority first: explicit overrides (CLI options), `STRATA_*` environment
variables (nested keys joined by `__`, e.g. `STRATA_ENGINE__MAX_NUM_SEQS=16`), the YAML file
(`--config`, or `STRATA_CONFIG`, or `./strata.yaml` when present), then the defaults below.
Unknown keys and bad values fail loudly with the dotted key named (`load_settings`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ByteSize, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from strata.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("strata.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class EngineSettings(_Section):
    """The built-in serving engine (`strata.engine`)."""

    model: str | None = Field(
        None,
        description="Hugging Face-format folder or .gguf file; empty means the bundled "
        "SmolLM2-135M-Instruct.",
    )
    served_model_name: str | None = Field(
        None, description="Name clients pass as `model`; defaults to the folder/file name."
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description="auto: bfloat16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), "
        "else float32.",
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads; default all cores.")
    block_size: int = Field(16, ge=1, le=256, description="Tokens per KV-cache block.")
    kv_cache_memory: ByteSize = Field(
        ByteSize(512 * 1024**2), description="Memory for the paged KV cache, e.g. '2GiB'."
    )
    max_model_len: int | None = Field(
        None, ge=16, description="Longest prompt+output; default the model's own limit."
    )
    max_num_seqs: int = Field(32, ge=1, le=4096, description="Batch cap: most running requests.")
    max_num_batched_tokens: int = Field(
        512, ge=16, description="Per-step token budget (chunked prefill splits longer prompts)."
    )
    max_waiting: int = Field(
        256, ge=0, description="Bounded queue; more waiting requests are rejected with 503."
    )
    batch_window_ms: float = Field(
        0.0, ge=0, le=10_000, description="How long an idle engine waits to gather a batch."
    )
    enable_prefix_caching: bool = True
    scheduling: Literal["fcfs", "priority"] = "fcfs"


class SloSettings(_Section):
    """Latency SLO the engine steers by (`strata.engine.slo`): batch cap, step token budget,
    batching window and load shedding are derived online from measured latencies."""

    enabled: bool = Field(
        False, description="Steer by the SLO; the engine.* cap, budget and window become limits."
    )
    ttft_p95_ms: float = Field(500.0, gt=0, description="p95 time-to-first-token target.")
    itl_p95_ms: float | None = Field(None, gt=0, description="p95 inter-token latency target.")


class EngineServerSettings(_Section):
    """`strata engine serve`: the engine alone, always behind an internal token."""

    host: str = "127.0.0.1"
    port: int = Field(8401, ge=1, le=65535)
    token: SecretStr | None = Field(
        None,
        description="Bearer token callers must send; default: generated at start-up and "
        "written (0600) to <data_dir>/engine.token.",
    )


class ServerSettings(_Section):
    """`strata serve`: the public front door."""

    host: str = "127.0.0.1"
    port: int = Field(8400, ge=1, le=65535)


class Settings(BaseSettings):
    """The root of the settings tree."""

    model_config = SettingsConfigDict(
        env_prefix="STRATA_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    data_dir: Path = Field(Path(".strata"), description="State: model cache, tokens, database.")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    server: ServerSettings = Field(default_factory=ServerSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    slo: SloSettings = Field(default_factory=SloSettings)
    engine_server: EngineServerSettings = Field(default_factory=EngineServerSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls)

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def engine_token_file(self) -> Path:
        return self.data_dir / "engine.token"


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by `STRATA_CONFIG` (or ./strata.yaml when present)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        path = config_file_path()
        return read_yaml(path) if path is not None else {}


def config_file_path() -> Path | None:
    named = os.environ.get("STRATA_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"STRATA_CONFIG names {path}, which is not a file.")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, not {data!r}.")
    return data


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings tree; raise `ConfigError` naming each bad key and how to fix it."""
    if config_file is not None:
        os.environ["STRATA_CONFIG"] = str(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        hint = "remove it (unknown key)" if err["type"] == "extra_forbidden" else err["msg"]
        env = "STRATA_" + "__".join(str(p) for p in err["loc"]).upper()
        lines.append(f"  {key}: {hint} (got {err.get('input')!r}; env {env})")
    return "Invalid strata settings:\n" + "\n".join(lines)
