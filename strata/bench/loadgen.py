"""Run one load level against an OpenAI-compatible server and summarize what the client saw.

    target = Target("http://127.0.0.1:8400/v1", api_key=token)
    workload = Workload(prompt_len=Uniform(20, 120), output_len=Fixed(64), seed=1)
    result = await run_load(target, workload, PoissonRate(4.0), Slo(ttft_ms=500),
                            budget=Budget(requests=200))
    result.summary.ttft_ms.p95, result.summary.goodput

The load generator knows nothing of the server's internals; everything it reports is measured
on the client, except token counts, which the server's `usage` supplies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from strata.bench.client import Target, http_client, send_request, with_model
from strata.bench.records import RequestRecord
from strata.bench.shapes import Budget, LoadShape
from strata.bench.slo import Slo
from strata.bench.summary import Summary, summarize
from strata.bench.workload import Workload

DEFAULT_BUDGET = Budget(requests=100)
OPEN_LOOP_CONNECTIONS = 512  # the pool for shapes without their own bound; stays under ulimit -n

OnDone = Callable[[RequestRecord], None]


@dataclass(frozen=True)
class LoadResult:
    target: Target  # with the model resolved
    workload: Workload
    shape: LoadShape
    budget: Budget
    slo: Slo | None
    records: list[RequestRecord]  # records[i] is request i
    duration_s: float  # first send to last answer
    summary: Summary

    def describe(self) -> dict[str, Any]:
        """The configuration, as the report shows it (never the API key)."""
        return {
            **self.target.describe(),
            "shape": self.shape.describe(),
            "budget": self.budget.describe(),
            "workload": self.workload.describe(),
            "slo": None if self.slo is None else self.slo.describe(),
        }


async def run_load(
    target: Target,
    workload: Workload,
    shape: LoadShape,
    slo: Slo | None = None,
    *,
    budget: Budget = DEFAULT_BUDGET,
    first_index: int = 0,
    warmup: int = 0,
    on_done: OnDone | None = None,
) -> LoadResult:
    """Send `workload`'s requests `first_index`, `first_index + 1`, ... as `shape` releases
    them until `budget` is spent, then wait for the last answer. `warmup` requests go first,
    all at once, and are not measured. Request failures are recorded, never raised; a target
    whose model cannot be found raises `BenchTargetError`."""
    records: dict[int, RequestRecord] = {}
    async with http_client(target, pool_size(shape, budget)) as http:
        target = await with_model(http, target)
        await warm_up(http, target, workload, warmup)

        async def send(index: int) -> None:
            spec = workload.request(first_index + index)
            records[index] = record = await send_request(http, target, spec)
            if on_done is not None:
                on_done(record)

        start = time.perf_counter()
        await shape.drive(send, budget)
        duration_s = time.perf_counter() - start
    done = [records[index] for index in sorted(records)]
    summary = summarize(done, duration_s, slo)
    return LoadResult(target, workload, shape, budget, slo, done, duration_s, summary)


async def warm_up(http: httpx.AsyncClient, target: Target, workload: Workload, count: int) -> None:
    """Requests thrown away before measuring: connections open, server caches and kernels warm.
    They have prompts of their own (negative indices), so they warm no measured prompt."""
    specs = [workload.request(-1 - number) for number in range(count)]
    await asyncio.gather(*(send_request(http, target, spec) for spec in specs))


def pool_size(shape: LoadShape, budget: Budget) -> int:
    bound = shape.max_in_flight or OPEN_LOOP_CONNECTIONS
    return min(bound, budget.requests or bound)
