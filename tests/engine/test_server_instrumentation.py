"""The engine server's instrumentation switch (`build_engine_app(instrumentation=...)`,
`telemetry.engine_instrumentation`): off, a request leaves the Prometheus metrics and
OpenTelemetry untouched; on, it is recorded. Real engine (tiny model), real app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from strata.config import load_settings
from strata.engine.engine import Engine
from strata.engine.server import build_engine_app
from strata.errors import ConfigError
from strata.telemetry.otel import EngineTelemetry
from tests.support.live_server import MODEL, TOKEN, make_engine
from tests.telemetry.otel.conftest import MemoryOtel, memory_otel

AUTH = {"authorization": f"Bearer {TOKEN}"}
# Everything a request records; the gauges read from the engine at scrape time are left out.
PER_REQUEST = (
    "strata:time_to_first_token_seconds_count",
    "strata:inter_token_latency_seconds_count",
    "strata:e2e_request_latency_seconds_count",
    "strata:request_queue_time_seconds_count",
    "strata:prompt_tokens_total",
    "strata:generation_tokens_total",
    "strata:request_success_total",
)


@pytest.fixture
async def engine(tiny_llama_folder: Path, tmp_path: Path) -> AsyncIterator[Engine]:
    engine = make_engine(tiny_llama_folder, tmp_path)
    await engine.start()
    yield engine
    await engine.stop()


@pytest.fixture
def memory() -> Iterator[MemoryOtel]:
    recorded = memory_otel()
    yield recorded
    recorded.otel.shutdown()


async def _serve_two_requests(app: httpx.ASGITransport) -> dict[str, float]:
    """A streamed chat and a plain completion; the per-request samples after them."""
    async with httpx.AsyncClient(transport=app, base_url="http://e", headers=AUTH) as http:
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 4, "ignore_eos": True, "stream": True}  # fmt: skip
        text = {"model": MODEL, "prompt": "a b c", "max_tokens": 3, "ignore_eos": True}
        for path, body in (("/v1/chat/completions", chat), ("/v1/completions", text)):
            reply = await http.post(path, json=body)
            assert reply.status_code == 200, reply.text
        scrape = (await http.get("/metrics")).text
    return _per_request(scrape)


def _per_request(scrape: str) -> dict[str, float]:
    samples = {
        s.name: s.value for family in text_string_to_metric_families(scrape) for s in family.samples
    }
    return {name: samples.get(name, 0.0) for name in PER_REQUEST}


async def test_off_records_nothing_per_request(engine: Engine, memory: MemoryOtel) -> None:
    telemetry = EngineTelemetry(memory.otel, MODEL)
    app = build_engine_app(engine, TOKEN, manage_engine=False, telemetry=telemetry,
                           instrumentation=False)  # fmt: skip
    recorded = await _serve_two_requests(httpx.ASGITransport(app))
    assert recorded == dict.fromkeys(PER_REQUEST, 0.0)
    assert memory.spans() == []


async def test_on_records_every_request(engine: Engine, memory: MemoryOtel) -> None:
    telemetry = EngineTelemetry(memory.otel, MODEL)
    app = build_engine_app(engine, TOKEN, manage_engine=False, telemetry=telemetry)
    recorded = await _serve_two_requests(httpx.ASGITransport(app))
    assert recorded["strata:time_to_first_token_seconds_count"] == 2
    assert recorded["strata:generation_tokens_total"] == 7
    assert recorded["strata:request_success_total"] == 2
    assert {s.name for s in memory.spans()} >= {f"chat {MODEL}", f"text_completion {MODEL}"}


def test_the_setting_is_on_by_default_and_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().telemetry.engine_instrumentation is True
    monkeypatch.setenv("STRATA_TELEMETRY__ENGINE_INSTRUMENTATION", "false")
    assert load_settings().telemetry.engine_instrumentation is False


def test_a_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRATA_TELEMETRY__ENGINE_INSTRUMENTATION", "sometimes")
    with pytest.raises(ConfigError, match=r"telemetry\.engine_instrumentation"):
        load_settings()
