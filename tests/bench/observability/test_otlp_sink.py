"""The benchmark's OTLP receiver, fed by the real OpenTelemetry SDK exporters: it counts every
export and reads the engine's per-request TTFT out of the engine's spans."""

from __future__ import annotations

import time

import httpx
import pytest

from strata.bench.observability.otlp_sink import OtlpSink
from strata.config import OtelSettings
from strata.engine.outputs import RequestTiming
from strata.telemetry.engine_metrics import FinishedRequest
from strata.telemetry.otel import EngineTelemetry, Otel


def _finished(first_token_after_s: float) -> FinishedRequest:
    t = time.perf_counter() - 1.0
    timing = RequestTiming(t + 0.001, t + 0.005, t + first_token_after_s, t + 0.2)
    return FinishedRequest(t, t + first_token_after_s + 0.001, t + 0.201, 20, 0, 8, "length",
                           timing)  # fmt: skip


def _export(sink: OtlpSink, requests: dict[str, FinishedRequest], metrics: bool) -> None:
    otel = Otel.from_settings(OtelSettings(traces=True, metrics=metrics, endpoint=sink.url))
    assert otel is not None
    telemetry = EngineTelemetry(otel, "tiny")
    for rid, done in requests.items():
        telemetry.request({"x-request-id": rid}, "chat", None)(done)
    otel.shutdown()  # exports what is buffered


def test_the_engines_ttft_per_request_id_comes_from_its_spans() -> None:
    with OtlpSink(keep_spans=True) as sink:
        _export(sink, {"req-a": _finished(0.040), "req-b": _finished(0.125)}, metrics=True)
        ttft = sink.engine_ttft_ms()
    assert ttft == {"req-a": pytest.approx(40.0, abs=0.01), "req-b": pytest.approx(125.0, abs=0.01)}
    assert sink.exports["/v1/traces"] >= 1 and sink.exports["/v1/metrics"] >= 1
    assert sink.bytes["/v1/traces"] > 0


def test_without_keep_spans_exports_are_only_counted() -> None:
    with OtlpSink() as sink:
        _export(sink, {"req-a": _finished(0.040)}, metrics=False)
        assert sink.engine_ttft_ms() == {}
        assert sink.exports == {"/v1/traces": 1}


def test_any_post_is_answered_as_a_success() -> None:
    with OtlpSink() as sink:
        reply = httpx.post(f"{sink.url}/v1/logs", content=b"anything")
    assert reply.status_code == 200 and reply.content == b""
