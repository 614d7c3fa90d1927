"""Does the TTFT strata records agree with the TTFT its client sees?

`strata bench serve`'s load generator sends streamed chat requests at a modest Poisson rate to
a gateway with its built-in engine, over loopback. Each answer's `x-request-id` finds the
request's row in the usage ledger (`ttft_ms`) and, through OpenTelemetry, the engine's own span
of the request. What each side measures:

- client: it starts sending the request → the first chunk with generated text arrives;
- gateway (ledger `ttft_ms`, `strata:gateway_time_to_first_token_seconds`): the gateway receives
  the request → the first text chunk, past the answer guard, is handed to the response;
- engine (`strata:time_to_first_token_seconds`): the engine's HTTP route receives the request →
  the first token reaches it; per request, from its trace: receipt → first token computed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from strata.bench.loadgen import run_load
from strata.bench.observability.otlp_sink import OtlpSink
from strata.bench.observability.processes import Gateway
from strata.bench.observability.stats import (
    Agreement,
    Matched,
    histogram_quantile,
    match_by_request_id,
)
from strata.bench.shapes import Budget, FixedConcurrency, PoissonRate
from strata.bench.workload import Fixed, LengthDist, Uniform, Workload
from strata.errors import ConfigError

ENGINE_TTFT = "strata:time_to_first_token_seconds"
GATEWAY_TTFT = "strata:gateway_time_to_first_token_seconds"
TRACE_TIMEOUT_S = 20.0  # spans are exported in batches, every 5 s by default
BOUND_MS = 5.0  # the target: client and strata agree within this at p50


@dataclass(frozen=True)
class AccuracyPlan:
    requests: int = 60
    rate: float = 1.0  # Poisson arrivals, requests per second
    output_tokens: int = 32
    prompt_len: LengthDist = field(default_factory=lambda: Uniform(20, 120))
    warmup: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.requests < 1:
            raise ConfigError("--accuracy-requests must be >= 1")
        if not self.rate > 0:
            raise ConfigError("--accuracy-rate must be > 0 requests per second")
        if self.output_tokens < 1:
            raise ConfigError("--output-tokens must be >= 1")
        if self.warmup < 0:
            raise ConfigError("--warmup must be >= 0")

    @property
    def workload(self) -> Workload:
        return Workload(self.prompt_len, Fixed(self.output_tokens), seed=self.seed)

    def describe(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "rate_per_s": self.rate,
            "warmup": self.warmup,
            **self.workload.describe(),
        }


@dataclass(frozen=True)
class AccuracyResult:
    plan: AccuracyPlan
    matched: Matched
    failed: int  # client requests that did not succeed
    histogram_p50_ms: dict[str, float | None]  # from the /metrics histograms' buckets

    @property
    def agreement(self) -> Agreement:
        return Agreement.of(self.matched)


async def measure_accuracy(gateway: Gateway, sink: OtlpSink, plan: AccuracyPlan) -> AccuracyResult:
    """Warm up, then the measured run between two scrapes of `/metrics`."""
    workload, target = plan.workload, gateway.target
    if plan.warmup:
        await run_load(target, workload, FixedConcurrency(1), budget=Budget(requests=plan.warmup),
                       first_index=1_000_000)  # fmt: skip
    before = await asyncio.to_thread(gateway.scrape)
    shape = PoissonRate(plan.rate, seed=plan.seed)
    load = await run_load(target, workload, shape, budget=Budget(requests=plan.requests))
    after = await asyncio.to_thread(gateway.scrape)
    ids = [r.request_id for r in load.records if r.ok and r.request_id is not None]
    ledger = await asyncio.to_thread(gateway.ledger_ttft_ms, ids)
    engine = await _engine_ttft_ms(sink, ids)
    p50 = {name: _ms(histogram_quantile(0.5, before, after, name))
           for name in (GATEWAY_TTFT, ENGINE_TTFT)}  # fmt: skip
    failed = sum(1 for r in load.records if not r.ok)
    return AccuracyResult(plan, match_by_request_id(load.records, ledger, engine), failed, p50)


async def _engine_ttft_ms(sink: OtlpSink, ids: list[str]) -> dict[str, float]:
    """The engine's per-request TTFT from its traces, once they have all arrived (or the wait
    is over: a missing trace leaves its request without an engine value)."""
    deadline = time.monotonic() + TRACE_TIMEOUT_S
    while True:
        seen = sink.engine_ttft_ms()
        if set(ids) <= seen.keys() or time.monotonic() > deadline:
            return seen
        await asyncio.sleep(0.25)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
