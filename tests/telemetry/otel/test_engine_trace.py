"""The engine server's OpenTelemetry: spans made after the fact from the engine's timestamps,
under the caller's traceparent, and the GenAI server metrics."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from strata.engine.outputs import Delta, RequestTiming
from strata.engine.server import build_engine_app
from strata.telemetry.engine_metrics import EngineMetrics, FinishedRequest, RequestRecorder
from strata.telemetry.otel import EngineTelemetry, genai
from tests.support.live_server import MODEL, TOKEN, make_engine
from tests.telemetry.otel.conftest import MemoryOtel, attributes, memory_otel
from tests.telemetry.test_engine_metrics import FakeClock, StatsSource

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
HEADERS = {"traceparent": f"00-{TRACE}-{PARENT}-01", "x-request-id": "req-7"}


def finished(reason: str = "length", at: float | None = None) -> FinishedRequest:
    """Arrived at t, queued 10 ms, prefilled 30 ms, decoded 60 ms, delivered 1 ms later."""
    t = time.perf_counter() - 1.0 if at is None else at
    timing = RequestTiming(t + 0.002, t + 0.012, t + 0.042, t + 0.102)
    return FinishedRequest(t, t + 0.043, t + 0.103, 20, 16, 4, reason, timing)


def times_ms(span: ReadableSpan) -> tuple[float, float]:
    """(start, end) in milliseconds since the epoch."""
    assert span.start_time is not None and span.end_time is not None
    return span.start_time / 1e6, span.end_time / 1e6


def test_one_request_is_a_server_span_with_queue_prefill_and_decode(memory: MemoryOtel) -> None:
    report = EngineTelemetry(memory.otel, "tiny").request(HEADERS, "chat", None)
    done = finished()
    report(done)
    root = memory.span("chat tiny")
    assert root.kind is SpanKind.SERVER and root.parent is not None
    assert f"{root.context.trace_id:032x}" == TRACE and f"{root.parent.span_id:016x}" == PARENT
    assert root.attributes is not None
    assert dict(root.attributes) == {
        "gen_ai.provider.name": "strata", "gen_ai.response.model": "tiny",
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "tiny",
        "gen_ai.usage.input_tokens": 20, "gen_ai.usage.output_tokens": 4,
        "gen_ai.response.finish_reasons": ("length",), "strata.request_id": "req-7",
    }  # fmt: skip
    inside = root.context.span_id
    phases = {
        s.name: times_ms(s) for s in memory.spans() if s.parent and s.parent.span_id == inside
    }
    start, end = times_ms(root)
    assert end - start == pytest.approx(103, abs=0.01)
    assert end == pytest.approx(time.time() * 1000 - 897, abs=50)  # dated on the wall clock
    offsets = {
        name: (round(t0 - start, 1), round(t1 - start, 1)) for name, (t0, t1) in phases.items()
    }
    assert offsets == {"queue": (2, 12), "prefill": (12, 42), "decode": (42, 102)}
    prefill = memory.span("prefill")
    assert prefill.attributes == {"strata.prompt_tokens": 20, "strata.cached_tokens": 16}


def test_the_metrics_come_from_what_the_http_layer_saw(memory: MemoryOtel) -> None:
    server = ("10.0.0.5", 8401)
    EngineTelemetry(memory.otel, "tiny", server).request({}, "text_completion", "tiny")(finished())
    (ttft,) = memory.points(genai.TIME_TO_FIRST_TOKEN)
    (tpot,) = memory.points(genai.TIME_PER_OUTPUT_TOKEN)
    assert ttft.sum == pytest.approx(0.043) and tpot.sum == pytest.approx(0.060 / 3)
    assert attributes(ttft)["gen_ai.operation.name"] == "text_completion"
    assert attributes(ttft)["server.address"] == "10.0.0.5"
    assert attributes(ttft)["server.port"] == 8401


def test_an_aborted_request_is_an_error_without_latency_samples(memory: MemoryOtel) -> None:
    EngineTelemetry(memory.otel, "tiny").request({}, "chat", "tiny")(finished("abort"))
    root = memory.span("chat tiny")
    assert root.status.status_code is StatusCode.ERROR
    assert root.attributes is not None and root.attributes["error.type"] == "aborted"
    assert root.parent is None  # no traceparent: a trace of its own
    assert memory.points(genai.TIME_TO_FIRST_TOKEN) == []
    (duration,) = memory.points(genai.REQUEST_DURATION)
    assert attributes(duration)["error.type"] == "aborted"


def test_metrics_alone_make_no_spans() -> None:
    recorded = memory_otel(traces=False)
    EngineTelemetry(recorded.otel, "tiny").request(HEADERS, "chat", None)(finished())
    assert recorded.spans() == [] and len(recorded.points(genai.REQUEST_DURATION)) == 1


def test_the_recorder_reports_the_finished_request_once() -> None:
    seen: list[FinishedRequest] = []
    clock = FakeClock(100.0)
    recorder = RequestRecorder(EngineMetrics(StatsSource()), 100.0, clock, seen.append)
    timing = RequestTiming(100.01, 100.02, 100.19, 100.49)
    clock.now = 100.2
    recorder.observe(Delta("r", (1,), "a", None, 7, 1, 4))
    clock.now = 100.5
    recorder.observe(Delta("r", (2, 3), "bc", "stop", 7, 3, 4, timing))
    (done,) = seen
    assert (done.arrival, done.first_token_at, done.finished_at) == (100.0, 100.2, 100.5)
    assert (done.prompt_tokens, done.cached_tokens, done.output_tokens) == (7, 4, 3)
    assert done.finish_reason == "stop" and done.timing == timing


async def test_the_engine_app_reports_what_it_answers(
    tiny_llama_folder: Path, tmp_path: Path, memory: MemoryOtel
) -> None:
    engine = make_engine(tiny_llama_folder, tmp_path)
    telemetry = EngineTelemetry(memory.otel, MODEL, ("127.0.0.1", 8401))
    app = build_engine_app(engine, TOKEN, manage_engine=False, telemetry=telemetry)
    await engine.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://e"
        ) as http:
            reply = await http.post(
                "/v1/completions",
                json={"model": MODEL, "prompt": "a b c", "max_tokens": 4, "ignore_eos": True},
                headers={"authorization": f"Bearer {TOKEN}", **HEADERS},
            )
    finally:
        await engine.stop()
    assert reply.status_code == 200
    root = memory.span(f"text_completion {MODEL}")
    assert root.parent is not None and f"{root.parent.span_id:016x}" == PARENT
    assert root.attributes is not None and root.attributes["gen_ai.usage.output_tokens"] == 4
    assert root.attributes["server.port"] == 8401
    assert {s.name for s in memory.spans()} == {root.name, "queue", "prefill", "decode"}
    (tpot,) = memory.points(genai.TIME_PER_OUTPUT_TOKEN)
    assert tpot.count == 1 and attributes(tpot)["gen_ai.request.model"] == MODEL
