"""The twin engine app: one engine under `/off`, `/on` and `/otel`, each behind the token, and
only the arms with instrumentation record a request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from strata.bench.observability.stats import histogram_count
from strata.bench.observability.twin import twin_app
from strata.engine.engine import Engine
from tests.support.live_server import MODEL, TOKEN, make_engine
from tests.telemetry.otel.conftest import memory_otel

TTFT = "strata:time_to_first_token_seconds"


@pytest.fixture
async def engine(tiny_llama_folder: Path, tmp_path: Path) -> AsyncIterator[Engine]:
    engine = make_engine(tiny_llama_folder, tmp_path)
    await engine.start()
    yield engine
    await engine.stop()


async def test_each_arm_serves_the_engine_and_only_instrumented_arms_record(
    engine: Engine,
) -> None:
    memory = memory_otel()
    app = twin_app(engine, TOKEN, memory.otel)
    auth = {"authorization": f"Bearer {TOKEN}"}
    body = {"model": MODEL, "prompt": "a b c", "max_tokens": 3, "ignore_eos": True}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/on/v1/models")).status_code == 401
        counts = {}
        for arm in ("off", "on", "otel"):
            reply = await http.post(f"/{arm}/v1/completions", json=body, headers=auth)
            assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] == 3
            scrape = (await http.get(f"/{arm}/metrics", headers=auth)).text
            counts[arm] = histogram_count(scrape, TTFT)
    assert counts == {"off": 0, "on": 1, "otel": 1}
    assert [s.name for s in memory.spans() if s.name.startswith("text_completion")] == [
        f"text_completion {MODEL}"
    ]  # from the otel arm only
    memory.otel.shutdown()


async def test_without_otel_there_are_two_arms(engine: Engine) -> None:
    app = twin_app(engine, TOKEN, None)
    auth = {"authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as http:
        assert (await http.get("/otel/v1/models", headers=auth)).status_code == 404
        assert (await http.get("/off/v1/models", headers=auth)).status_code == 200
