"""One typed settings tree for all of strata.

Sources, highest priority first: explicit overrides (CLI options), `STRATA_*` environment
variables (nested keys joined by `__`, e.g. `STRATA_ENGINE__MAX_NUM_SEQS=16`), the YAML file
(`--config`, or `STRATA_CONFIG`, or `./strata.yaml` when present), then the defaults below.
Unknown keys and bad values fail loudly with the dotted key named (`load_settings`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
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
    scheduling: Literal["fair", "fcfs", "priority"] = Field(
        "fair",
        description="Waiting-queue order. fair: start-time fair queueing by tokens served per "
        "fairness key (X-Strata-Fairness-Key, which the gateway sets per tenant), FCFS within "
        "a key, so one key alone is plain FCFS; fcfs: arrival order; priority: the "
        "request's `priority`, then arrival.",
    )


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


class StoreSettings(_Section):
    """strata's own PostgreSQL (`strata.store`): keys, tenants, audit log, usage ledger."""

    dsn: SecretStr | None = Field(
        None,
        description="PostgreSQL DSN (pgvector needed for retrieval); empty: the embedded "
        "PostgreSQL 18 started in <data_dir>/postgres.",
    )
    pool_size: int = Field(4, ge=1, le=256, description="Connections the gateway keeps open.")


class ModelPrice(_Section):
    """What one model's tokens cost, in US dollars per million tokens."""

    input_per_mtok: float = Field(0.0, ge=0, description="USD per 1M prompt tokens.")
    output_per_mtok: float = Field(0.0, ge=0, description="USD per 1M completion tokens.")


class GpuHourPrice(_Section):
    """What one GPU costs per hour in each purchasing tier, in US dollars."""

    reserved: float = Field(gt=0, description="USD per GPU-hour under a reserved commitment.")
    on_demand: float = Field(gt=0, description="USD per GPU-hour on demand.")
    spot: float | None = Field(
        None, gt=0, description="USD per GPU-hour on spot/preemptible; empty: no spot market."
    )

    @model_validator(mode="after")
    def _tiers_ordered(self) -> GpuHourPrice:
        if self.reserved > self.on_demand:
            raise ValueError(
                f"reserved ({self.reserved}) costs more than on_demand ({self.on_demand}); "
                "a reservation is a discount on on-demand: check the numbers"
            )
        if self.spot is not None and self.spot > self.on_demand:
            raise ValueError(f"spot ({self.spot}) costs more than on_demand ({self.on_demand})")
        return self


def _list_price(on_demand: float) -> dict[str, float]:
    # Reserved = on-demand / 1.5: the seed's "on-demand costs 40-60% more than a one-year
    # reservation" at its midpoint (AWS one-year savings plans on GPU instances run 30-40% off).
    # Spot = 35% of on-demand: the seed's "spot saves up to 70%" (GPU spot runs 50-70% off
    # when it is available at all).
    return {"reserved": round(on_demand / 1.5, 2), "on_demand": on_demand,
            "spot": round(on_demand * 0.35, 2)}  # fmt: skip


# USD per GPU-hour: typical list prices as of 2025, not fetched from anywhere (strata runs
# offline); check your provider's price list and override them. On-demand is a hyperscaler's
# (AWS us-east-1) instance price divided by its GPUs: g6.xlarge 1xL4 $0.805/h, g5.xlarge
# 1xA10G $1.006/h, p4d.24xlarge 8xA100-40GB $32.77/h, p4de.24xlarge 8xA100-80GB $40.97/h,
# p5.48xlarge 8xH100 ~$55/h after the mid-2025 price cut; H200 (p5en) taken as ~15% above
# H100. Specialist GPU clouds list H100s at $2-3/h on demand: override for them.
DEFAULT_GPU_HOUR_USD: dict[str, dict[str, float]] = {
    "l4": _list_price(0.80),
    "a10g": _list_price(1.01),
    "a100-40gb": _list_price(4.10),
    "a100-80gb": _list_price(5.12),
    "h100-80gb": _list_price(6.88),
    "h200": _list_price(7.91),
}


class PricingSettings(_Section):
    """The one price table: gateway budgets, cost metrics and the capacity planner use it."""

    models: dict[str, ModelPrice] = Field(
        default_factory=dict, description="Price per served model name (aliases resolve first)."
    )
    default: ModelPrice = Field(
        default_factory=ModelPrice, description="Price for a model not listed in pricing.models."
    )
    gpu_hour_usd: dict[str, GpuHourPrice] = Field(
        default_factory=lambda: {k: GpuHourPrice(**v) for k, v in DEFAULT_GPU_HOUR_USD.items()},
        description="USD per GPU-hour by GPU name (l4, a10g, a100-40gb, a100-80gb, h100-80gb, "
        "h200, or your own): {reserved, on_demand, spot}. Entries merge over the built-in "
        "typical 2025 list prices; a field left out keeps its default.",
    )
    spot_preemptions_per_hour: float = Field(
        0.01,
        ge=0,
        le=60,
        description="Expected reclaims per spot replica-hour (0.01: about 7 per replica-month).",
    )
    reserved_term_months: int = Field(
        12, ge=1, le=60, description="Length of a reserved commitment (one year by default)."
    )

    @field_validator("gpu_hour_usd", mode="before")
    @classmethod
    def _over_defaults(cls, value: Any) -> Any:
        """Merge the configured entries (names lower-cased) over the built-in table."""
        if not isinstance(value, dict):
            return value  # pydantic names the type error
        merged: dict[str, Any] = {k: dict(v) for k, v in DEFAULT_GPU_HOUR_USD.items()}
        for name, entry in value.items():
            key = str(name).lower()
            if isinstance(entry, GpuHourPrice):
                entry = entry.model_dump()
            if isinstance(entry, dict) and key in merged:
                entry = {**merged[key], **entry}
            merged[key] = entry
        return merged


class LimitSettings(_Section):
    """How the gateway's limits and quotas are kept (`strata.gateway.limits`)."""

    on_redis_error: Literal["closed", "open"] = Field(
        "closed",
        description="When Redis cannot be reached: 'closed' refuses requests with 503, 'open' "
        "admits them without counting (logged).",
    )
    default_max_tokens: int = Field(
        1024,
        ge=1,
        description="Tokens reserved for the completion when a request sets no max_tokens; "
        "the upstream request is clamped to it.",
    )
    concurrency_lease_s: float = Field(
        900.0,
        gt=0,
        description="A concurrency slot held longer than this (a dead gateway's) is freed.",
    )


UpstreamKind = Literal["engine", "openai"]
Tier = Literal["reserved", "on-demand", "spot"]


class UpstreamSettings(_Section):
    """One model endpoint the gateway may route to."""

    name: str = Field(min_length=1, max_length=64, description="Unique name (logs, ledger).")
    kind: UpstreamKind = Field(
        "openai",
        description="'engine': the built-in engine in this process; 'openai': any "
        "OpenAI-compatible server by URL (strata engine server, vLLM, another gateway).",
    )
    url: str | None = Field(None, description="Base URL up to /v1, e.g. http://10.0.0.5:8401/v1.")
    api_key_env: str | None = Field(
        None, description="Environment variable holding the upstream's credential."
    )
    api_key_file: Path | None = Field(None, description="File holding the upstream's credential.")
    models: list[str] = Field(
        default_factory=list,
        description="Model names this upstream serves; empty for kind 'engine' means its "
        "served model.",
    )
    tier: Tier = "on-demand"
    gpu: str | None = Field(
        None,
        description="Self-hosted: the pricing.gpu_hour_usd entry one replica runs on; a "
        "request then costs its share of replica time (usage.strata_replica_seconds) at "
        "`tier`'s GPU-hour price. Empty: priced per token (pricing.models).",
    )
    dpa: bool = Field(
        False, description="A data-processing agreement forbids training on inputs sent here."
    )
    timeout_s: float = Field(600.0, gt=0, description="Total time one call may take.")
    connect_timeout_s: float = Field(5.0, gt=0)
    max_connections: int = Field(256, ge=1, description="Open connections kept to this upstream.")
    max_in_flight: int | None = Field(
        None,
        ge=1,
        description="Requests in flight at which this upstream counts as saturated, so the "
        "router bursts to the next tier; when every upstream of a model is saturated, "
        "requests wait their fair turn (routing.fairness); empty: never saturated.",
    )
    supports: list[str] | None = Field(
        None,
        description="Optional OpenAI fields this upstream honours (tools, logprobs, n, "
        "response_format, ...); a request using another goes to an upstream that honours it "
        "or is refused with a 400 naming the field. Empty: forward everything and let the "
        "upstream answer.",
    )
    discover: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$",
        description="Instead of one url: the pool in the registry (Redis, redis_url) whose "
        "replicas announce themselves there (the engine replicas of `strata deploy ray`). "
        "Each replica is routed to as its own upstream named <name>/<replica> with these "
        "settings; needs models.",
    )

    engine_model: str | None = Field(
        None,
        max_length=4096,
        description="Set when this upstream is a strata engine server: the model it serves, as "
        "its engine.model names it (a folder, a .gguf file, or 'bundled'); a folder with the "
        "tokenizer files is enough. The router then hashes prompts into that engine's KV "
        "blocks and routes by cached prefix (routing.prefix_affinity). The built-in engine "
        "(kind engine) uses engine.model.",
    )

    @model_validator(mode="after")
    def _engine_model_on_http_upstreams(self) -> UpstreamSettings:
        if self.kind == "engine" and self.engine_model is not None:
            raise ValueError(
                f"upstream '{self.name}' is the built-in engine, whose model is engine.model; "
                "remove its engine_model"
            )
        if self.engine_model is not None and not self.engine_model.strip():
            raise ValueError(
                f"upstream '{self.name}': engine_model is empty; name the engine's model "
                "folder or .gguf file, or 'bundled'"
            )
        return self

    @model_validator(mode="after")
    def _where_and_how(self) -> UpstreamSettings:
        if self.discover is not None:
            _check_discovered(self)
        elif self.kind == "openai" and not self.url:
            raise ValueError(
                f"upstream '{self.name}' (kind openai) needs a url, e.g. http://127.0.0.1:8401/v1"
            )
        if self.kind == "engine" and self.url:
            raise ValueError(f"upstream '{self.name}' is the built-in engine; remove its url")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f"upstream '{self.name}': url must start with http:// or https://")
        if self.api_key_env and self.api_key_file:
            raise ValueError(f"upstream '{self.name}': set api_key_env or api_key_file, not both")
        return self


def _check_discovered(upstream: UpstreamSettings) -> None:
    """An upstream read from the registry: an OpenAI-compatible pool with declared models."""
    where = f"upstream '{upstream.name}' (discover: {upstream.discover})"
    if upstream.kind != "openai":
        raise ValueError(f"{where}: only kind openai can be discovered; remove kind")
    if upstream.url:
        raise ValueError(f"{where}: its replicas announce their urls; remove url")
    if not upstream.models:
        raise ValueError(
            f"{where}: list the models its replicas serve (models: [...]), so the model is "
            "known while no replica is up"
        )


class FairnessSettings(_Section):
    """Fair admission in the router (`strata.gateway.upstream.admission`): when every upstream
    serving a model is at its `max_in_flight`, requests wait in a queue that serves tenants in
    start-time fair order by tokens (a flooding tenant cannot starve the others). The tenant's
    weight also travels to strata engines, whose `fair` scheduling uses it."""

    weights: dict[str, Annotated[float, Field(gt=0, le=100)]] = Field(
        default_factory=dict,
        description="Tenant -> weight in (0, 100]: while both wait, a tenant of weight 2 is "
        "served twice the tokens of one of weight 1. Tenants not listed: default_weight.",
    )
    default_weight: float = Field(1.0, gt=0, le=100)
    max_wait_s: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="Longest a request waits for its turn at a saturated model before a 503 "
        "with Retry-After; 0: refuse at once.",
    )
    max_waiting: int = Field(
        1024, ge=0, description="Requests waiting per model at most; more get a 503 at once."
    )

    def weight_of(self, tenant: str) -> float:
        return self.weights.get(tenant, self.default_weight)


class RoutingSettings(_Section):
    """How model names map to upstreams and how failures are handled (`strata.gateway.routing`)."""

    aliases: dict[str, str] = Field(
        default_factory=dict, description="Public model name -> served model name."
    )
    retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries (other upstreams first) before the first byte reaches the client.",
    )
    backoff_ms: float = Field(50.0, ge=0, description="First retry delay; doubles each retry.")
    health_interval_s: float = Field(5.0, gt=0, description="Health-check period per upstream.")
    discovery_interval_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="How often the registry is read for the replicas of upstreams with "
        "`discover` (a replica that left stops getting requests within this).",
    )
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive failures that open an upstream's circuit breaker."
    )
    breaker_reset_s: float = Field(
        10.0, gt=0, description="How long an open breaker waits before one trial request."
    )
    prefix_affinity: bool = Field(
        True,
        description="Send a prompt to the strata engine whose KV cache holds most of its "
        "leading blocks, unless that engine is overloaded (then to the least busy). Applies "
        "where a model has two or more strata engines among its upstreams (engine_model set, "
        "or the built-in engine).",
    )
    prefix_overload_margin: int = Field(
        4,
        ge=0,
        le=100_000,
        description="An engine holding the prefix counts as overloaded, and is passed over, "
        "when it has more than this many requests in flight beyond the least busy engine "
        "(or is at its max_in_flight).",
    )
    prefix_min_match: float = Field(
        0.5,
        ge=0,
        le=1,
        description="The share of a prompt's KV blocks an engine must hold for prefix_affinity "
        "to prefer it; below it (a shared chat-template opening, a default system prompt) the "
        "request is placed as a new prefix, on the least busy engine. 0: any cached block.",
    )
    kv_poll_interval_s: float = Field(
        0.25,
        gt=0,
        le=60,
        description="How often the router reads each strata engine's prefix-cache changes "
        "(POST /v1/kv/events) for prefix_affinity.",
    )
    fairness: FairnessSettings = Field(default_factory=FairnessSettings)


class GatewaySettings(_Section):
    """The public front door (`strata serve`): request checks, timeouts, TLS."""

    request_timeout_s: float = Field(600.0, gt=0, description="Total time any request may take.")
    max_body_bytes: ByteSize = Field(ByteSize(4 * 1024**2), description="Larger bodies get 413.")
    max_messages: int = Field(1024, ge=1, description="Most chat messages in one request.")
    key_cache_s: float = Field(
        2.0,
        ge=0,
        description="How long a verified key is trusted before re-reading the store "
        "(bounds how late a revocation from another replica takes effect).",
    )
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    ledger_flush_ms: float = Field(
        100.0,
        gt=0,
        description="Usage ledger batch interval (short: each batch is one short pause).",
    )
    engine: bool = Field(
        True, description="Run the built-in engine in-process as upstream 'engine'."
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> GatewaySettings:
        if (self.tls_certfile is None) != (self.tls_keyfile is None):
            raise ValueError("set both gateway.tls_certfile and gateway.tls_keyfile, or neither")
        for path in (self.tls_certfile, self.tls_keyfile):
            if path is not None and not path.is_file():
                raise ValueError(f"{path} is not a file")
        return self


DEBEZIUM_PLACEHOLDER = "__debezium_unavailable_value"


class DebeziumBrokerSettings(_Section):
    """Where a `kind: debezium` source reads Debezium's change events (JSON, as Debezium
    Server's NATS JetStream or Redis Streams sink publishes them) and how it tracks its place."""

    kind: Literal["nats", "redis"] = Field(
        "nats", description="'nats': a NATS JetStream stream; 'redis': a Redis stream."
    )
    url: str = Field(description="nats://host:4222, or redis://host:6379/0.")
    stream: str = Field(
        min_length=1,
        description="nats: the JetStream stream name; redis: the stream key (Debezium Server "
        "names it <topic.prefix>.<schema>.<table>).",
    )
    subject: str | None = Field(
        None,
        description="nats: the subject of the table's events, <topic.prefix>.<schema>.<table> "
        "as Debezium Server publishes them.",
    )
    durable: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="nats: the durable consumer; redis: the consumer group. Default "
        "strata_<source name>.",
    )
    batch: int = Field(256, ge=1, le=10000, description="Most events read in one fetch.")
    ack_wait_s: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="nats: how long an event may stay unacknowledged (read, not yet indexed) "
        "before the broker delivers it again.",
    )
    placeholder: str = Field(
        DEBEZIUM_PLACEHOLDER,
        min_length=1,
        description="Debezium's unavailable.value.placeholder: the value it sends for an "
        "unchanged TOASTed column.",
    )

    @model_validator(mode="after")
    def _addressed(self) -> DebeziumBrokerSettings:
        scheme = "nats://" if self.kind == "nats" else ("redis://", "rediss://")
        if not self.url.startswith(scheme):
            raise ValueError(f"broker.url must start with {scheme} for broker.kind {self.kind}")
        if self.kind == "nats" and not self.subject:
            raise ValueError(
                "broker.subject is required for kind nats: the subject Debezium Server publishes "
                "the table's events on, <topic.prefix>.<schema>.<table>"
            )
        if self.kind == "redis" and self.subject:
            raise ValueError("broker.subject applies to kind nats only; remove it")
        return self


class PipelineSourceSettings(_Section):
    """One CDC source (`strata.pipeline`): a table of the user's PostgreSQL, streamed through
    logical replication (kind postgres) or read as Debezium's change events from a broker (kind
    debezium) into one retrieval collection."""

    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,39}$",
        description="Unique source name (lower case, digits, _); the publication and the "
        "replication slot on the primary are named strata_<name>.",
    )
    kind: Literal["postgres", "debezium"] = Field(
        "postgres",
        description="'postgres': logical replication from `dsn`; 'debezium': Debezium's change "
        "events from `broker` (the primary is not contacted).",
    )
    dsn: SecretStr = Field(
        SecretStr(""),
        description="kind postgres: the primary database, wal_level=logical and a role allowed "
        "to replicate.",
    )
    broker: DebeziumBrokerSettings | None = Field(
        None, description="kind debezium: where Debezium publishes the table's change events."
    )
    table: str = Field(
        pattern=r"^([A-Za-z_][A-Za-z0-9_$]*\.)?[A-Za-z_][A-Za-z0-9_$]*$",
        description="Table to index, optionally schema-qualified (public.tickets).",
    )
    primary_key: list[str] = Field(
        default_factory=list, description="Key columns; empty: the table's primary key."
    )
    text_columns: list[str] = Field(
        default_factory=list, description="Columns whose text is embedded, joined by blank lines."
    )
    template: str | None = Field(
        None, description="Instead of text_columns: e.g. '{title}\\n\\n{body}' ({column} fields)."
    )
    metadata_columns: list[str] = Field(
        default_factory=list, description="Columns copied to each chunk's metadata (filters)."
    )
    tenant_column: str | None = Field(None, description="Column naming the row's tenant.")
    tenant: str | None = Field(
        None, min_length=1, description="Instead of tenant_column: one tenant owns every row."
    )
    collection: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="Retrieval collection name."
    )
    row_filter: str | None = Field(
        None,
        description="SQL condition on the table's columns; only matching rows are indexed, "
        "e.g. \"status <> 'spam'\".",
    )

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSourceSettings:
        where = f"pipeline source '{self.name}'"
        named = {
            "primary_key": self.primary_key,
            "text_columns": self.text_columns,
            "metadata_columns": self.metadata_columns,
            "tenant_column": [self.tenant_column] if self.tenant_column else [],
        }
        for field_name, columns in named.items():
            for column in columns:
                _check_sql_name(column, f"{where} {field_name}")
        if bool(self.text_columns) == (self.template is not None):
            raise ValueError(f"{where}: set text_columns or template (exactly one)")
        if self.template is not None:
            for column in _template_fields(self.template):
                _check_sql_name(column, f"{where} template")
        if (self.tenant_column is None) == (self.tenant is None):
            raise ValueError(f"{where}: set tenant_column or tenant (exactly one)")
        if self.row_filter is not None and (";" in self.row_filter or not self.row_filter.strip()):
            raise ValueError(f"{where}: row_filter must be one SQL condition without ';'")
        _check_kind(self, where)
        return self

    @property
    def template_columns(self) -> list[str]:
        """The columns the text is made of (text_columns, or the template's fields)."""
        if self.template is None:
            return list(self.text_columns)
        return list(dict.fromkeys(_template_fields(self.template)))


def _check_kind(source: PipelineSourceSettings, where: str) -> None:
    """What each kind of source needs: a primary to stream from, or a broker to read."""
    if source.kind == "postgres":
        if not source.dsn.get_secret_value():
            raise ValueError(f"{where}: set dsn (the primary database) for kind postgres")
        if source.broker is not None:
            raise ValueError(f"{where}: broker applies to kind debezium only; remove it")
        return
    if source.broker is None:
        raise ValueError(
            f"{where}: kind debezium needs broker (kind nats or redis, url, stream, ...): where "
            "Debezium Server publishes the table's change events"
        )
    if source.dsn.get_secret_value():
        raise ValueError(
            f"{where}: dsn is not used by kind debezium (strata reads the broker only); remove it"
        )
    if not source.primary_key:
        raise ValueError(
            f"{where}: kind debezium needs primary_key, the table's key columns (Debezium "
            "Server's sinks do not carry the event key)"
        )
    if source.row_filter is not None:
        raise ValueError(
            f"{where}: row_filter needs the primary, which kind debezium does not read; filter "
            "in Debezium instead (its filter transform) and remove row_filter"
        )


def _check_sql_name(name: str, where: str) -> None:
    if not (name.isidentifier() and name.isascii() and len(name) <= 63):
        raise ValueError(f"{where}: {name!r} is not a plain column name")


class _FieldCollector(dict[str, str]):
    """Records the {fields} a format string asks for."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: list[str] = []

    def __missing__(self, key: str) -> str:
        self.fields.append(key)
        return ""


def _template_fields(template: str) -> list[str]:
    collector = _FieldCollector()
    try:
        template.format_map(collector)
    except (ValueError, AttributeError, IndexError, KeyError) as exc:
        raise ValueError(f"template must use plain {{column}} fields: {exc}") from exc
    if not collector.fields:
        raise ValueError("template names no {column}")
    return collector.fields


class EmbedderSettings(_Section):
    """The embedding model of the pipeline, the retriever and the gateway's /v1/embeddings."""

    kind: Literal["minilm", "openai"] = Field(
        "minilm",
        description="'minilm': the bundled all-MiniLM-L6-v2 (CPU, offline); 'openai': any "
        "OpenAI-compatible /v1/embeddings endpoint.",
    )
    url: str | None = Field(None, description="kind openai: base URL up to /v1.")
    model: str | None = Field(None, description="kind openai: the model name to request.")
    dims: int | None = Field(None, ge=1, le=16000, description="kind openai: vector length.")
    api_key_env: str | None = Field(None, description="Environment variable with the API key.")
    batch_size: int = Field(32, ge=1, le=2048, description="Texts per model call.")
    timeout_s: float = Field(30.0, gt=0, description="kind openai: time one call may take.")
    max_retries: int = Field(6, ge=0, le=20, description="kind openai: retries on 429 / 5xx.")

    @model_validator(mode="after")
    def _upstream(self) -> EmbedderSettings:
        if self.kind == "openai":
            if not self.url or not self.url.startswith(("http://", "https://")):
                raise ValueError("pipeline.embedder: kind openai needs an http(s) url")
            if not self.model or self.dims is None:
                raise ValueError("pipeline.embedder: kind openai needs model and dims")
        elif self.url or self.model or self.dims:
            raise ValueError("pipeline.embedder: url, model and dims apply to kind openai only")
        return self


class PipelineWorkerSettings(_Section):
    """This process as one of several pipeline workers sharing `pipeline.sources`
    (`strata.pipeline.ownership`): one worker at a time streams each source; the others stand
    by and take it over when its owner dies."""

    id: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,62}$",
        description="This worker's name in `strata pipeline status` and logs (letters, digits, "
        "_ . : @ -); default <hostname>-<pid>.",
    )
    sources: list[str] | None = Field(
        None,
        min_length=1,
        description="Only these sources (names from pipeline.sources); default: all of them. "
        "`strata pipeline run --source` overrides it.",
    )
    poll_interval_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="How often a worker tries to take over a source another worker owns.",
    )
    dead_peer_s: int = Field(
        15,
        ge=2,
        le=3600,
        description="Over TCP: how long the store waits on an owner that stopped answering "
        "(host down, network cut) before its session, and so its sources, are released.",
    )


class PipelineSettings(_Section):
    """CDC → embeddings → pgvector (`strata.pipeline`), and retrieval over it."""

    sources: list[PipelineSourceSettings] = Field(
        default_factory=list, description="Tables streamed into the index."
    )
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)
    chunk_tokens: int = Field(128, ge=16, le=512, description="Most tokens in one chunk.")
    retry_interval_s: float = Field(
        30.0, gt=0, description="First delay before a dead-lettered row is retried (doubles)."
    )
    max_attempts: int = Field(10, ge=1, description="Tries before a dead letter is left alone.")
    ef_search: int = Field(100, ge=10, le=1000, description="HNSW candidate list per query.")
    max_scan_tuples: int = Field(
        20000, ge=1000, description="Most index tuples a filtered (iterative) scan visits."
    )
    freshness_samples: int = Field(
        10000, ge=100, description="Recent freshness samples kept per source for status."
    )
    group_transactions: int = Field(
        256,
        ge=1,
        le=10000,
        description="Most waiting source transactions applied as one index write (1: one by one).",
    )
    worker: PipelineWorkerSettings = Field(default_factory=PipelineWorkerSettings)

    @model_validator(mode="after")
    def _unique_names(self) -> PipelineSettings:
        names = [s.name for s in self.sources]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"pipeline.sources: names must be unique; repeated: {repeated}")
        return self

    @model_validator(mode="after")
    def _worker_sources_known(self) -> PipelineSettings:
        names = sorted(s.name for s in self.sources)
        unknown = sorted(set(self.worker.sources or []) - set(names))
        if unknown:
            raise ValueError(
                f"pipeline.worker.sources: no pipeline source named {unknown}; configured: "
                f"{names}: name sources from pipeline.sources, or remove the key to run them all"
            )
        return self

    def source(self, name: str) -> PipelineSourceSettings:
        """The source called `name`; `KeyError` when none is."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)


class OtelSettings(_Section):
    """OpenTelemetry export over OTLP (`strata.telemetry.otel`): request traces and the GenAI
    semantic-convention metrics. Off unless `traces` or `metrics` is on."""

    traces: bool = Field(False, description="Export a trace of each generation request's stages.")
    metrics: bool = Field(False, description="Export the OpenTelemetry GenAI metrics.")
    endpoint: str | None = Field(
        None,
        description="The collector: for http/protobuf the base URL (/v1/traces and /v1/metrics "
        "are appended), e.g. http://127.0.0.1:4318; for grpc its URL, e.g. http://127.0.0.1:4317.",
    )
    protocol: Literal["http/protobuf", "grpc"] = Field(
        "http/protobuf", description="OTLP transport; grpc needs the `otlp-grpc` extra."
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Headers sent with every export (a collector's key)."
    )
    timeout_s: float = Field(10.0, gt=0, le=300, description="Time one export may take.")
    service_name: str = Field("strata", min_length=1, description="The `service.name` resource.")
    sample_ratio: float = Field(
        1.0, ge=0, le=1, description="Share of new traces kept; a caller's traceparent decides "
        "for its own requests.",
    )  # fmt: skip
    metrics_interval_s: float = Field(
        10.0, gt=0, le=3600, description="Seconds between metric exports."
    )

    @model_validator(mode="after")
    def _where_to(self) -> OtelSettings:
        if (self.traces or self.metrics) and not self.endpoint:
            on = "traces" if self.traces else "metrics"
            raise ValueError(
                f"telemetry.otel.{on} is on but telemetry.otel.endpoint is empty; set it to the "
                "collector, e.g. http://127.0.0.1:4318"
            )
        if self.endpoint and not self.endpoint.startswith(("http://", "https://")):
            raise ValueError(
                "telemetry.otel.endpoint must start with http:// or https://, e.g. "
                "http://127.0.0.1:4318"
            )
        return self


MAX_DASHBOARD_POINTS = 100_000


class TelemetrySettings(_Section):
    """Metrics (`strata.telemetry`)."""

    tenant_labels: list[str] = Field(
        default_factory=list,
        description="Tenants that get their own label on per-tenant metrics; every other tenant "
        "counts as 'other' (bounded label cardinality).",
    )
    otel: OtelSettings = Field(default_factory=OtelSettings)
    engine_instrumentation: bool = Field(
        True,
        description="Record each engine request in the Prometheus metrics and OpenTelemetry; "
        "false records none (engine-wide gauges remain), e.g. to measure what recording costs.",
    )
    dashboard_interval_s: float = Field(
        2.0, ge=0.05, le=300, description="Seconds between the dashboard's samples of the metrics."
    )
    dashboard_history_s: float = Field(
        3600.0, gt=0, le=7 * 86400, description="How far back the dashboard's plots reach."
    )
    dashboard_session_s: float = Field(
        3600.0, gt=0, le=7 * 86400, description="How long a dashboard login lasts."
    )

    @model_validator(mode="after")
    def _bounded_history(self) -> TelemetrySettings:
        if self.dashboard_points > MAX_DASHBOARD_POINTS:
            raise ValueError(
                f"telemetry.dashboard_history_s / dashboard_interval_s keeps "
                f"{self.dashboard_points} points; at most {MAX_DASHBOARD_POINTS}"
            )
        return self

    @property
    def dashboard_points(self) -> int:
        """Points the dashboard keeps in memory (about a kilobyte each)."""
        return max(1, math.ceil(self.dashboard_history_s / self.dashboard_interval_s))


class LatencyAlertSettings(_Section):
    """p99 time to first token and end-to-end latency per route: over a fixed threshold, or
    jumping against its own recent baseline."""

    ttft_p99_ms: float | None = Field(
        2000.0, gt=0, description="Fire when p99 TTFT over the window exceeds this; empty: off."
    )
    e2e_p99_ms: float | None = Field(
        60000.0, gt=0, description="Fire when p99 end-to-end latency exceeds this; empty: off."
    )
    jump_factor: float | None = Field(
        3.0,
        gt=1,
        description="Fire when a p99 exceeds this multiple of its baseline p99 (the median of "
        "the baseline's per-slice p99s); empty: no baseline rule.",
    )
    jump_min_ms: float = Field(
        250.0, ge=0, description="A jump counts only when the p99 is also above this."
    )


class CostAlertSettings(_Section):
    """Cost-per-request anomaly per tenant, by robust statistics (median and MAD)."""

    mad_factor: float = Field(
        5.0,
        gt=0,
        description="Fire when a tenant's median cost per request over the window exceeds its "
        "baseline median by this many scaled MADs (1.4826 x MAD)...",
    )
    min_increase: float = Field(
        0.5, ge=0, description="...and by at least this fraction of that median (0.5: +50%)."
    )


class QuotaAlertSettings(_Section):
    """A user or tenant nearing a daily or monthly token or cost budget."""

    warn_fraction: float = Field(
        0.8, gt=0, lt=1, description="Fire when this share of a budget is used."
    )


class FreshnessAlertSettings(_Section):
    """The pipeline's freshness (source commit to searchable) against its SLO."""

    slo_s: float | None = Field(
        30.0,
        gt=0,
        description="Fire when a source's p99 freshness over the window exceeds this many "
        "seconds; empty: off.",
    )


class WebhookSettings(_Section):
    """Where alerts are POSTed as JSON (besides the log)."""

    url: str | None = Field(None, description="http(s) URL; empty: alerts go to the log only.")
    timeout_s: float = Field(5.0, gt=0, le=60, description="Time one POST may take.")
    retries: int = Field(3, ge=0, le=10, description="Retries after a failed POST (backoff).")
    secret_header: str = Field(
        "X-Strata-Alert-Secret",
        pattern=r"^[A-Za-z0-9-]{1,64}$",
        description="Header that carries `secret`.",
    )
    secret: SecretStr | None = Field(
        None, description="Sent in `secret_header` so the receiver can tell strata's POSTs."
    )

    @field_validator("url")
    @classmethod
    def _http(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(
                "must start with http:// or https://, e.g. https://hooks.example.com/a"
            )
        return url

    @model_validator(mode="after")
    def _secret_needs_url(self) -> WebhookSettings:
        if self.secret is not None and self.url is None:
            raise ValueError("alerts.webhook.secret is set but alerts.webhook.url is empty")
        return self


class AlertSettings(_Section):
    """Alert rules evaluated inside strata (`strata.telemetry.alerts`), sent to the log and
    an optional webhook. Each rule compares the recent `window_s` with the `baseline_s` before
    it; a condition must hold `for_s` to fire and stay clear `resolve_after_s` to resolve."""

    enabled: bool = Field(True, description="Evaluate the alert rules in the gateway.")
    interval_s: float = Field(10.0, gt=0, le=3600, description="Seconds between evaluations.")
    window_s: float = Field(120.0, gt=0, description="The recent window each rule looks at.")
    baseline_s: float = Field(
        3600.0, gt=0, description="How far back before the window the baseline reaches."
    )
    for_s: float = Field(
        120.0,
        ge=0,
        description="How long a condition must hold before it fires (at least window_s: one "
        "outlier then cannot fire).",
    )
    resolve_after_s: float = Field(
        300.0, ge=0, description="How long a firing alert must stay clear before it resolves."
    )
    clear_ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Hysteresis: a firing alert is clear only below this share of its threshold.",
    )
    min_samples: int = Field(
        20, ge=1, description="Fewest requests in the window (and the baseline) to judge."
    )
    latency: LatencyAlertSettings = Field(default_factory=LatencyAlertSettings)
    cost: CostAlertSettings = Field(default_factory=CostAlertSettings)
    quota: QuotaAlertSettings = Field(default_factory=QuotaAlertSettings)
    freshness: FreshnessAlertSettings = Field(default_factory=FreshnessAlertSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)

    @model_validator(mode="after")
    def _windows(self) -> AlertSettings:
        if self.window_s < self.interval_s:
            raise ValueError(
                f"alerts.window_s ({self.window_s}) is shorter than alerts.interval_s "
                f"({self.interval_s}); make the window at least one interval"
            )
        if self.baseline_s < self.window_s:
            raise ValueError(
                f"alerts.baseline_s ({self.baseline_s}) is shorter than alerts.window_s "
                f"({self.window_s}); the baseline should span several windows"
            )
        return self


class GuardSettings(_Section):
    """The guard (`strata.guard`): what it does per detector, per tenant, in the gateway step
    and on the chunks the pipeline indexes (`strata.pipeline.screen`)."""

    enabled: bool = Field(
        True, description="Run the guard on every generation request and every indexed chunk."
    )
    default: dict[str, Any] = Field(
        default_factory=lambda: {"injection": "flag"},
        description="Policy for tenants not listed: injection, injection_threshold, secrets, "
        "pii, canary, hidden_characters, documents (actions: block, redact, flag, off; for "
        "documents, block quarantines an indexed chunk the detector flags).",
    )
    tenants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-tenant policies; keys left out keep the default."
    )


class RequestLogSettings(_Section):
    """Request logs (`strata.gateway.request_logs`): the prompts and answers of the tenants an
    admin opted in (`strata logs enable`), redacted before they are stored, kept for a while."""

    retention_days: int = Field(
        30, ge=1, le=3650, description="Days a log is kept, unless its tenant sets its own."
    )
    max_text_chars: int = Field(
        20_000, ge=100, le=200_000,
        description="Most characters stored of a request's prompt, and of its answer.",
    )  # fmt: skip
    flush_ms: float = Field(1000.0, gt=0, le=60_000, description="Log batch interval.")
    refresh_s: float = Field(
        5.0, gt=0, le=3600,
        description="How often the opted-in tenants are re-read (changes made through another "
        "replica or the CLI take effect within this).",
    )  # fmt: skip
    purge_interval_s: float = Field(
        600.0, gt=0, le=86_400, description="How often logs past their retention are deleted."
    )


class EnginePoolSettings(_Section):
    """One Ray Serve deployment of engine replicas (`strata deploy ray`): one tier, scaled
    between its min and max by `strata.deploy.autoscaling` from the replicas' queue depth and
    SLO attainment."""

    name: str = Field(
        "engine",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$",
        description="Deployment and registry pool name; its replicas are routed to as "
        "upstreams <name>/<replica>.",
    )
    tier: Tier = Field("reserved", description="The routing tier of every replica of the pool.")
    min_replicas: int = Field(
        1,
        ge=1,
        le=1000,
        description="Replicas always running (at least 1: requests reach engines through the "
        "gateway's router, not Ray's, so Ray could not wake a pool scaled to zero).",
    )
    max_replicas: int = Field(1, ge=1, le=1000, description="Most replicas autoscaling may run.")
    num_cpus: float = Field(1.0, gt=0, le=1024, description="CPUs Ray reserves per replica.")
    num_gpus: float = Field(0.0, ge=0, le=64, description="GPUs Ray reserves per replica.")
    resources: dict[str, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict,
        description="Custom Ray resources per replica, e.g. {spot: 1} to place the pool on "
        "nodes started with --resources '{\"spot\": 100}'.",
    )
    max_in_flight: int | None = Field(
        None, ge=1, description="Per replica: see upstreams[].max_in_flight (tier bursting)."
    )
    target_queue_depth: float = Field(
        4.0,
        gt=0,
        le=10_000,
        description="Requests running or waiting per replica that autoscaling aims at.",
    )
    slo_attainment_target: float = Field(
        0.9,
        gt=0,
        le=1,
        description="With slo.* set: while the replicas' share of requests within the TTFT "
        "SLO is under this, add a replica (and never remove one) whatever the queue depth.",
    )
    upscale_delay_s: float = Field(
        30.0, ge=0, le=3600, description="How long more replicas must be wanted before adding."
    )
    downscale_delay_s: float = Field(
        300.0, ge=0, le=86_400, description="How long fewer must be wanted before removing."
    )
    look_back_s: float = Field(
        30.0, gt=0, le=3600, description="Window the replicas' metrics are averaged over."
    )
    metrics_interval_s: float = Field(
        5.0, gt=0, le=600, description="How often each replica reports its metrics to Ray."
    )

    @model_validator(mode="after")
    def _bounds(self) -> EnginePoolSettings:
        if self.max_replicas < self.min_replicas:
            raise ValueError(
                f"deploy.ray.engines[{self.name}]: max_replicas ({self.max_replicas}) is below "
                f"min_replicas ({self.min_replicas}); raise max_replicas or lower min_replicas"
            )
        return self

    @property
    def autoscaled(self) -> bool:
        return self.max_replicas > self.min_replicas


class RayDeploySettings(_Section):
    """`strata deploy ray`: engine pools and gateway replicas as Ray Serve deployments, sharing
    PostgreSQL (store.dsn) and Redis (redis_url)."""

    address: str | None = Field(
        None,
        description="The Ray cluster: 'auto' (the one this node belongs to), host:port of "
        "its GCS, or ray://host:10001; empty: start Ray inside the command (one machine).",
    )
    namespace: str = Field("strata", min_length=1, description="The Ray namespace.")
    http_host: str = Field("127.0.0.1", description="Where Ray Serve's HTTP proxy listens.")
    http_port: int = Field(8000, ge=1, le=65535, description="The proxy's port: the public API.")
    gateway_replicas: int = Field(2, ge=1, le=1000, description="Gateway replicas behind it.")
    gateway_cpus: float = Field(1.0, gt=0, le=1024, description="CPUs Ray reserves per gateway.")
    engines: list[EnginePoolSettings] = Field(
        default_factory=lambda: [EnginePoolSettings()],
        min_length=1,
        description="Engine pools, one Ray Serve deployment each (e.g. one per tier).",
    )
    heartbeat_s: float = Field(
        2.0,
        gt=0,
        le=60,
        description="An engine replica re-announces itself this often; its registry entry "
        "expires after 3 missed heartbeats.",
    )
    health_check_period_s: float = Field(
        2.0, gt=0, le=600, description="How often Ray checks each replica (it replaces a dead one)."
    )
    drain_timeout_s: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="A replica being stopped finishes its requests for at most this long.",
    )

    @model_validator(mode="after")
    def _unique_pools(self) -> RayDeploySettings:
        names = [pool.name for pool in self.engines]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"deploy.ray.engines: names must be unique; repeated: {repeated}")
        return self


class DeploySettings(_Section):
    """Running the same configuration on a distributed system (`strata deploy ...`)."""

    ray: RayDeploySettings = Field(default_factory=RayDeploySettings)


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
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    pricing: PricingSettings = Field(default_factory=PricingSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    upstreams: list[UpstreamSettings] = Field(
        default_factory=list,
        description="Model endpoints besides the built-in engine (see gateway.engine).",
    )
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)
    request_logs: RequestLogSettings = Field(default_factory=RequestLogSettings)
    deploy: DeploySettings = Field(default_factory=DeploySettings)
    redis_url: SecretStr | None = Field(
        None, description="STRATA_REDIS_URL: share limits among gateway replicas through Redis."
    )

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

    @model_validator(mode="after")
    def _upstreams_consistent(self) -> Settings:
        names = [u.name for u in self.upstreams]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"upstreams: names must be unique; repeated: {duplicates}")
        engines = [u.name for u in self.upstreams if u.kind == "engine"]
        if len(engines) > 1:
            raise ValueError(f"upstreams: only one kind 'engine' upstream may exist: {engines}")
        if engines and not self.gateway.engine:
            raise ValueError("upstreams: a kind 'engine' upstream needs gateway.engine: true")
        if not self.gateway.engine and not self.upstreams:
            raise ValueError(
                "gateway.engine is false and no upstreams are configured: nothing "
                "could answer; add an upstream or enable the built-in engine"
            )
        for upstream in self.upstreams:
            _check_gpu_price(upstream, self.pricing)
        return self

    @model_validator(mode="after")
    def _discovery_needs_redis(self) -> Settings:
        discovered = [u.name for u in self.upstreams if u.discover is not None]
        if discovered and self.redis_url is None:
            raise ValueError(
                f"upstreams {discovered} are discovered from the registry in Redis: set "
                "redis_url (STRATA_REDIS_URL), e.g. redis://10.0.0.3:6379/0"
            )
        return self

    @property
    def model_cache_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def engine_token_file(self) -> Path:
        return self.data_dir / "engine.token"

    @property
    def guard_secret_file(self) -> Path:
        return self.data_dir / "guard.secret"

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"


def _check_gpu_price(upstream: UpstreamSettings, pricing: PricingSettings) -> None:
    """A self-hosted upstream's `gpu` must name a price for its tier."""
    if upstream.gpu is None:
        return
    entry = pricing.gpu_hour_usd.get(upstream.gpu.lower())
    if entry is None:
        raise ValueError(
            f"upstreams[{upstream.name}].gpu is {upstream.gpu!r}, which pricing.gpu_hour_usd "
            f"does not list; use one of {sorted(pricing.gpu_hour_usd)} or add "
            f"pricing.gpu_hour_usd.{upstream.gpu.lower()}"
        )
    if upstream.tier == "spot" and entry.spot is None:
        raise ValueError(
            f"upstreams[{upstream.name}] has tier spot but pricing.gpu_hour_usd."
            f"{upstream.gpu.lower()}.spot is empty; set that price or change the tier"
        )


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
    """Build the settings tree; raise `ConfigError` naming each bad key and how to fix it.
    `config_file` is read for this call only: the environment (which child processes inherit)
    is left as it was."""
    with _config_file(config_file):
        try:
            return Settings(**overrides)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc)) from exc


@contextmanager
def _config_file(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    before = os.environ.get("STRATA_CONFIG")
    os.environ["STRATA_CONFIG"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("STRATA_CONFIG", None)
        else:
            os.environ["STRATA_CONFIG"] = before


def describe_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        hint = "remove it (unknown key)" if err["type"] == "extra_forbidden" else err["msg"]
        if not key:  # a rule across sections: the message names the keys
            lines.append(f"  {hint}")
            continue
        env = "STRATA_" + "__".join(str(p) for p in err["loc"]).upper()
        lines.append(f"  {key}: {hint} (got {_shown(key, err.get('input'))}; env {env})")
    return "Invalid strata settings:\n" + "\n".join(lines)


_SECRET_WORDS = ("token", "dsn", "secret", "password", "key", "url")


def _shown(key: str, value: object) -> str:
    """The bad value as the message shows it; values of credential-like keys stay hidden."""
    if isinstance(value, dict) or any(word in key.lower() for word in _SECRET_WORDS):
        return "<hidden>"
    return repr(value)
