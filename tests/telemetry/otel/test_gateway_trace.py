"""The gateway's request trace: stage spans, the upstream span and its traceparent, ending
exactly once; sampling that follows the caller; client metrics per upstream."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from strata.config import UpstreamSettings
from strata.errors import AuthenticationError
from strata.telemetry.otel import CallOutcome, GatewayTelemetry, Upstream, genai, stage
from tests.telemetry.otel.conftest import MemoryOtel, attributes, memory_otel

ROUTE = "/v1/chat/completions"
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SAMPLED = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
UPSTREAMS = {"engine": Upstream(genai.STRATA), "far": Upstream("openai", "10.0.0.9", 8000)}


def outcome(**fields: object) -> CallOutcome:
    values: dict[str, object] = {
        "route": ROUTE, "model": "m", "upstream": "engine", "tenant": "acme",
        "request_id": "req-1", "status": 200, "error_code": None, "prompt_tokens": 11,
        "completion_tokens": 5, "usage_reported": True, "duration_s": 0.5, "ttft_s": 0.1,
    }  # fmt: skip
    return CallOutcome(**{**values, **fields})  # type: ignore[arg-type]


def test_a_traced_call_nests_its_stages_and_ends_once(memory: MemoryOtel) -> None:
    telemetry = GatewayTelemetry(memory.otel, UPSTREAMS)
    trace = telemetry.trace(SAMPLED, ROUTE)
    assert trace is not None
    with stage(trace, "auth"):
        trace.identify("acme")
    headers = dict(trace.upstream_headers("m"))
    telemetry.finished(outcome(), trace)
    trace.failed(RuntimeError("late"))  # after the finish: changes nothing
    telemetry.finished(outcome(status=500), trace)
    root, auth, upstream = (memory.span(n) for n in (f"POST {ROUTE}", "auth", "chat m"))
    assert f"{root.context.trace_id:032x}" == TRACE and root.kind is SpanKind.SERVER
    assert auth.parent == upstream.parent == root.context
    assert upstream.kind is SpanKind.CLIENT
    assert headers["traceparent"] == f"00-{TRACE}-{upstream.context.span_id:016x}-01"
    assert root.attributes is not None and upstream.attributes is not None
    assert root.attributes["strata.tenant"] == "acme"
    assert root.attributes["http.response.status_code"] == 200
    assert (root.attributes["gen_ai.usage.input_tokens"], root.attributes["strata.ttft_s"]) == (
        11, 0.1)  # fmt: skip
    assert upstream.attributes["gen_ai.provider.name"] == "strata"
    assert root.status.status_code is StatusCode.UNSET
    assert len(memory.spans()) == 3


def test_a_failing_stage_marks_its_span_and_the_root(memory: MemoryOtel) -> None:
    trace = GatewayTelemetry(memory.otel, UPSTREAMS).trace({}, ROUTE)
    assert trace is not None
    refused = AuthenticationError("no", code="invalid_api_key")
    with pytest.raises(AuthenticationError), stage(trace, "auth"):
        raise refused
    trace.failed(refused)
    root, auth = memory.span(f"POST {ROUTE}"), memory.span("auth")
    assert root.parent is None
    assert auth.status.status_code is StatusCode.ERROR
    assert auth.attributes is not None and auth.attributes["error.type"] == "invalid_api_key"
    assert root.attributes is not None and root.attributes["http.response.status_code"] == 401
    assert root.status.status_code is StatusCode.UNSET  # a 4xx is the caller's error


def test_a_cancelled_request_ends_its_open_upstream_span(memory: MemoryOtel) -> None:
    trace = GatewayTelemetry(memory.otel, UPSTREAMS).trace({}, ROUTE)
    assert trace is not None
    trace.upstream_headers("m")
    trace.failed(asyncio.CancelledError())
    upstream = memory.span("chat m")
    assert upstream.attributes is not None and upstream.attributes["error.type"] == "client_closed"
    assert upstream.attributes["http.response.status_code"] == 499
    assert upstream.status.status_code is StatusCode.ERROR  # a client span fails from 400 up


def test_sampling_keeps_a_share_of_new_traces_and_follows_the_caller() -> None:
    recorded = memory_otel(sample_ratio=0.0)
    telemetry = GatewayTelemetry(recorded.otel, UPSTREAMS)
    dropped = telemetry.trace({}, ROUTE)
    kept = telemetry.trace(SAMPLED, ROUTE)
    assert dropped is not None and kept is not None
    unsampled = dict(dropped.upstream_headers("m"))["traceparent"]
    assert int(unsampled.rsplit("-", 1)[1], 16) & 1 == 0  # the upstream is told: not sampled
    kept.upstream_headers("m")
    telemetry.finished(outcome(), dropped)
    telemetry.finished(outcome(), kept)
    assert {f"{s.context.trace_id:032x}" for s in recorded.spans()} == {TRACE}


def test_no_tracer_means_no_trace_and_untraced_stages_share_one_no_op() -> None:
    recorded = memory_otel(traces=False)
    assert GatewayTelemetry(recorded.otel, UPSTREAMS).trace(SAMPLED, ROUTE) is None
    assert stage(None, "auth") is stage(None, "guard")
    with stage(None, "auth"):
        pass


def test_client_metrics_name_the_upstream_and_skip_what_they_cannot_know(
    memory: MemoryOtel,
) -> None:
    telemetry = GatewayTelemetry(memory.otel, UPSTREAMS)
    telemetry.finished(outcome(upstream="far", status=429, error_code=None), None)
    telemetry.finished(outcome(usage_reported=False), None)  # estimated: no token usage
    telemetry.finished(outcome(upstream=""), None)  # reached no upstream
    telemetry.finished(outcome(route="/v1/embeddings"), None)  # no GenAI operation here
    durations = {attributes(p).get("server.address"): p for p in memory.points(
        genai.OPERATION_DURATION)}  # fmt: skip
    assert attributes(durations["10.0.0.9"]) == {
        "gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
        "gen_ai.provider.name": "openai", "server.address": "10.0.0.9", "server.port": 8000,
        "error.type": "429",
    }  # fmt: skip
    assert durations[None].count == 1  # the engine's
    tokens = memory.points(genai.TOKEN_USAGE)
    assert {attributes(p)["server.address"] for p in tokens} == {"10.0.0.9"}


def test_upstreams_are_named_from_their_settings() -> None:
    engine = UpstreamSettings(name="engine", kind="engine")
    vllm = UpstreamSettings(name="v", url="https://gpu.internal/v1", models=["m"])
    assert Upstream.from_settings(engine) == Upstream("strata")
    assert Upstream.from_settings(vllm) == Upstream("openai", "gpu.internal", 443)
    plain = UpstreamSettings(name="p", url="http://10.1.1.1:8401/v1", models=["m"])
    assert Upstream.from_settings(plain).port == 8401
    assert outcome(status=502).error_type == "502" and outcome().error_type is None
    assert outcome(status=499, error_code="client_closed").error_type == "client_closed"
