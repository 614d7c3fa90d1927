"""One failover run: load, a SIGKILL of the spot replica, and what the clients saw."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from strata.bench.failover.cluster import Cluster
from strata.bench.failover.load import Outcome, client, out_of_rotation
from strata.bench.records import percentile


@dataclass(frozen=True)
class Plan:
    clients: int = 8  # half stream, half not
    duration_s: float = 12.0
    kill_at_s: float = 4.0
    max_tokens: int = 24


@dataclass(frozen=True)
class FailoverResult:
    plan: Plan
    outcomes: tuple[Outcome, ...]
    killed_at: float
    out_of_rotation_s: float | None

    def count(self, kind: str, stream: bool | None = None) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind and stream in (None, o.stream))

    @property
    def first_fallback_content_s(self) -> float | None:
        """From the kill to the first text of a stream started after it: when new traffic is
        being served again (by the fallback, the only replica left)."""
        firsts = [
            o.first_content
            for o in self.outcomes
            if o.started >= self.killed_at and o.first_content is not None
        ]
        return min(firsts) - self.killed_at if firsts else None

    def latency_ms(self, after_kill: bool, stream: bool, q: float) -> float | None:
        """Percentile `q` of completed requests started before or after the kill."""
        values = [
            (o.ended - o.started) * 1000
            for o in self.outcomes
            if o.kind == "ok" and o.stream == stream and (o.started >= self.killed_at) == after_kill
        ]
        return percentile(values, q) if values else None


async def run(cluster: Cluster, plan: Plan) -> FailoverResult:
    headers = {"Authorization": f"Bearer {cluster.key}"}
    outcomes: list[Outcome] = []
    async with httpx.AsyncClient(base_url=cluster.gateway_url, headers=headers, timeout=60) as http:
        start = time.monotonic()
        until = start + plan.duration_s
        clients = [
            asyncio.create_task(client(http, i % 2 == 0, plan.max_tokens, until, outcomes))
            for i in range(plan.clients)
        ]
        await asyncio.sleep(plan.kill_at_s)
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.kill, "spot")
        rotation = await out_of_rotation(http, "spot", killed_at)
        await asyncio.gather(*clients)
    return FailoverResult(plan, tuple(outcomes), killed_at, rotation)
