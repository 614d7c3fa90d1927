"""Self-hosted cost end to end: the bundled SmolLM2 in the built-in engine behind the gateway,
driven by the openai SDK with concurrent requests of different sizes. Each request costs its
share of replica time at the GPU-hour price; over the run, the ledger's request costs plus the
idle cost equal replica-seconds x price (within 2%)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
import pytest

from strata.config import Settings
from strata.engine.engine import Engine
from strata.gateway.runtime import BuiltinEngine
from tests.support.live_gateway import LiveGateway

MODEL = "SmolLM2-135M-Instruct"
USD_PER_GPU_HOUR = 7.2
USD_PER_S = USD_PER_GPU_HOUR / 3600
FILLER = "The committee reviewed the quarterly figures, the hiring plan and the office move. "
# (request id, prompt, max_tokens, streamed): the first two differ only in prompt length.
REQUESTS = [
    ("big", "Summarize this: " + FILLER * 12, 16, True),
    ("small", "Say hi.", 16, False),
    ("medium", "Summarize this: " + FILLER * 4, 24, True),
    ("long-answer", "Count to fifty.", 32, False),
    ("short-answer", "Name a colour.", 4, True),
    ("tail", "Summarize this: " + FILLER * 2, 12, False),
]


@pytest.fixture
def settings(pg_dsn: str, tmp_path: Path, smollm2_folder: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        store={"dsn": pg_dsn},
        gateway={"engine": True, "ledger_flush_ms": 20},
        engine={"model": str(smollm2_folder), "served_model_name": MODEL, "max_model_len": 768,
                "kv_cache_memory": "128MiB", "batch_window_ms": 300},
        upstreams=[{"name": "engine", "kind": "engine", "gpu": "h200", "tier": "on-demand"}],
        pricing={"gpu_hour_usd": {"h200": {"reserved": 3.6, "on_demand": USD_PER_GPU_HOUR}}},
        alerts={"enabled": False},
    )  # fmt: skip


@pytest.fixture
def builtin(settings: Settings) -> BuiltinEngine:
    engine = Engine.from_settings(settings.engine, settings.model_cache_dir)
    return BuiltinEngine.serving(engine, settings)


async def ask(live: LiveGateway, key: str, request: tuple[str, str, int, bool]) -> float:
    """One request through the SDK; the replica seconds its usage reported."""
    rid, prompt, max_tokens, stream = request
    client = live.async_client(key)
    common: dict[str, Any] = {
        "model": MODEL, "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens, "extra_body": {"ignore_eos": True},
        "extra_headers": {"x-request-id": rid},
    }  # fmt: skip
    if not stream:
        reply = await client.chat.completions.create(**common)
        assert reply.usage is not None and reply.usage.completion_tokens == max_tokens
        return float(reply.usage.model_extra["strata_replica_seconds"])
    usage = None
    chunks = await client.chat.completions.create(
        **common, stream=True, stream_options={"include_usage": True}
    )
    async for chunk in chunks:
        usage = chunk.usage or usage
    assert usage is not None and usage.completion_tokens == max_tokens
    return float(usage.model_extra["strata_replica_seconds"])


async def test_request_costs_plus_idle_cost_equal_replica_time_times_price(
    settings: Settings, builtin: BuiltinEngine, pg_dsn: str
) -> None:
    with LiveGateway(settings, builtin) as live:  # leaving writes the last rows
        key = live.create_key(tenant="acme", user="alice")
        await asyncio.sleep(0.3)  # the replica idles first
        seconds = await asyncio.gather(*(ask(live, key, r) for r in REQUESTS))
        await asyncio.sleep(0.3)  # and after
        report = live.admin("GET", "/usage", params={"by": "tenant"}).json()
        metrics = live.http(live.admin_key).get("/metrics").text
    reported = dict(zip([r[0] for r in REQUESTS], seconds, strict=True))

    costs, replica = ledger_costs(pg_dsn), replica_time(pg_dsn)
    # Each row is priced from the seconds the engine reported (passed on to the client).
    for rid, cost in costs.items():
        assert cost == pytest.approx(reported[rid] * USD_PER_S, abs=1e-8)
    # Same steps, same output length: the longer prompt's prefill is billed to it.
    assert costs["big"] > costs["small"] > 0
    replica_s, idle_s, replica_usd, idle_usd = replica
    assert idle_s >= 0.6 and replica_usd == pytest.approx(replica_s * USD_PER_S)
    off = (sum(costs.values()) + idle_usd) / replica_usd - 1
    print(f"replica {replica_s:.3f} s, idle {idle_s:.3f} s, requests "
          f"{sum(costs.values()) / USD_PER_S:.3f} s; request costs + idle cost vs replica time "
          f"x price: {100 * off:+.6f}%")  # fmt: skip
    assert abs(off) <= 0.02

    [engine_row] = report["replicas"]
    assert engine_row["upstream"] == "engine" and 0 < engine_row["idle_share"] < 1
    assert 'strata:upstream_idle_cost_usd_total{upstream="engine"}' in metrics
    assert "strata:engine_idle_seconds_total" in metrics
    assert 'strata:gateway_request_cost_usd_count{tenant="other"} 6.0' in metrics


def ledger_costs(dsn: str) -> dict[str, float]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT request_id, cost_usd FROM usage_ledger WHERE upstream = 'engine'"
        ).fetchall()
    assert len(rows) == len(REQUESTS)
    return {rid: float(cost) for rid, cost in rows}


def replica_time(dsn: str) -> tuple[float, float, float, float]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT sum(replica_s), sum(idle_s), sum(replica_cost_usd), sum(idle_cost_usd) "
            "FROM replica_time WHERE upstream = 'engine'"
        ).fetchone()
    assert row is not None and row[0] is not None
    return float(row[0]), float(row[1]), float(row[2]), float(row[3])
