"""OpenTelemetry end to end: a live gateway with the built-in engine (a tiny random Llama) or a
mock OpenAI upstream, the real `openai` SDK as the client, and an in-process OTLP/HTTP
receiver as the collector. What arrives there is checked: the GenAI instruments with their
attributes and values, and one trace per request whose spans nest as the stages run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from strata.config import Settings
from strata.engine.engine import Engine
from strata.gateway.runtime import BuiltinEngine
from strata.telemetry.otel import genai
from tests.gateway.conftest import gateway_settings
from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream
from tests.support.otlp_receiver import HistogramPoint, OtlpReceiver, ReceivedSpan

MODEL = "tiny"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
ERROR = 2  # Status.StatusCode


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


def engine_settings(
    pg_dsn: str, tmp_path: Path, folder: Path, otel: dict[str, Any] | None
) -> Settings:
    telemetry = {} if otel is None else {"otel": otel}
    return Settings(
        data_dir=tmp_path,
        store={"dsn": pg_dsn},
        gateway={"ledger_flush_ms": 20},
        engine={"model": str(folder), "served_model_name": MODEL, "max_model_len": 256,
                "kv_cache_memory": "8MiB"},
        telemetry=telemetry,
    )  # fmt: skip


def exporting_to(receiver: OtlpReceiver, **fields: Any) -> dict[str, Any]:
    # A long interval: everything arrives with the last export at shutdown, all at once.
    return {"traces": True, "metrics": True, "endpoint": receiver.url,
            "metrics_interval_s": 60, **fields}  # fmt: skip


def live_with_engine(settings: Settings) -> LiveGateway:
    engine = Engine.from_settings(settings.engine, settings.model_cache_dir, settings.slo)
    return LiveGateway(settings, BuiltinEngine.serving(engine, settings))


def one(points: list[HistogramPoint], **attributes: Any) -> HistogramPoint:
    found = [p for p in points if all(p.attributes.get(k) == v for k, v in attributes.items())]
    assert len(found) == 1, (attributes, points)
    return found[0]


def by_name(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def children(spans: list[ReceivedSpan], parent: ReceivedSpan) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans if s.parent_span_id == parent.span_id}


def assert_inside(child: ReceivedSpan, parent: ReceivedSpan, slack_ns: int = 2_000_000) -> None:
    """`child` ran within `parent` (the engine's spans are dated from another clock: 2 ms slack)."""
    assert parent.start_ns - slack_ns <= child.start_ns <= child.end_ns
    assert child.end_ns <= parent.end_ns + slack_ns


def test_a_streamed_chat_exports_the_genai_metrics_and_one_trace_of_its_stages(
    pg_dsn: str, tmp_path: Path, tiny_llama_folder: Path, otlp: OtlpReceiver
) -> None:
    settings = engine_settings(pg_dsn, tmp_path, tiny_llama_folder, exporting_to(otlp))
    with live_with_engine(settings) as gw:
        client = gw.client(gw.create_key(tenant="acme", user="alice"))
        chunks = list(client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hello there"}], max_tokens=6,
            stream=True, stream_options={"include_usage": True},
            extra_body={"ignore_eos": True}, extra_headers={"traceparent": TRACEPARENT},
        ))  # fmt: skip
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 6

    # The model server's three instruments, with the conventions' attributes and buckets.
    served = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "strata",
              "gen_ai.request.model": MODEL, "gen_ai.response.model": MODEL}  # fmt: skip
    ttft = one(otlp.histograms(genai.TIME_TO_FIRST_TOKEN), **served)
    tpot = one(otlp.histograms(genai.TIME_PER_OUTPUT_TOKEN), **served)
    duration = one(otlp.histograms(genai.REQUEST_DURATION), **served)
    assert ttft.attributes == served and ttft.unit == "s" and tpot.unit == "s"
    assert ttft.bounds == genai.TTFT_BUCKETS_S and tpot.bounds == genai.TPOT_BUCKETS_S
    assert duration.bounds == genai.DURATION_BUCKETS_S
    assert ttft.count == tpot.count == duration.count == 1
    assert 0 < ttft.sum <= duration.sum < 60
    assert tpot.sum == pytest.approx((duration.sum - ttft.sum) / 5, rel=1e-6)
    assert ttft.resource["service.name"] == "strata"

    # The gateway's client instruments: the usage the response reported, per token type.
    asked = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "strata",
             "gen_ai.request.model": MODEL}  # fmt: skip
    tokens = otlp.histograms(genai.TOKEN_USAGE)
    assert one(tokens, **asked, **{"gen_ai.token.type": "input"}).sum == usage.prompt_tokens
    assert one(tokens, **asked, **{"gen_ai.token.type": "output"}).sum == 6
    assert {p.unit for p in tokens} == {"{token}"}
    assert tokens[0].bounds == genai.TOKEN_BUCKETS and tokens[0].bounds[-1] == 67108864
    operation = one(otlp.histograms(genai.OPERATION_DURATION), **asked)
    assert operation.count == 1 and "error.type" not in operation.attributes
    assert duration.sum <= operation.sum

    # One trace, under the caller's traceparent, with the stages nested as they ran.
    spans = otlp.spans()
    assert {s.trace_id for s in spans} == {CALLER_TRACE}
    root = by_name(spans, "POST /v1/chat/completions")
    assert root.parent_span_id == CALLER_SPAN and root.kind == SERVER
    assert root.attributes["strata.tenant"] == "acme"
    assert root.attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert root.attributes["gen_ai.usage.output_tokens"] == 6
    assert root.attributes["http.response.status_code"] == 200
    stages = children(spans, root)
    assert set(stages) == {"auth", "guard", "limits", "chat tiny"}
    order = sorted(stages.values(), key=lambda s: s.start_ns)
    assert [s.name for s in order] == ["auth", "guard", "limits", "chat tiny"]
    for stage in order:
        assert_inside(stage, root, slack_ns=0)
    upstream = stages["chat tiny"]
    assert upstream.kind == CLIENT and upstream.attributes["strata.upstream"] == "engine"
    assert upstream.attributes["gen_ai.usage.output_tokens"] == 6

    engine = children(spans, upstream)["chat tiny"]  # the engine's, under the traceparent sent
    assert engine.kind == SERVER and engine.attributes["gen_ai.response.model"] == MODEL
    assert engine.attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert engine.attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert_inside(engine, upstream)
    phases = children(spans, engine)
    assert set(phases) == {"queue", "prefill", "decode"}
    assert phases["prefill"].attributes["strata.prompt_tokens"] == usage.prompt_tokens
    assert phases["decode"].attributes["strata.output_tokens"] == 6
    assert phases["queue"].end_ns <= phases["prefill"].start_ns + 1000
    assert phases["prefill"].end_ns <= phases["decode"].start_ns + 1000
    for phase in phases.values():
        assert_inside(phase, engine)


def test_a_request_without_traceparent_starts_a_trace_and_a_refusal_is_traced(
    pg_dsn: str, tmp_path: Path, tiny_llama_folder: Path, otlp: OtlpReceiver
) -> None:
    settings = engine_settings(pg_dsn, tmp_path, tiny_llama_folder, exporting_to(otlp))
    with live_with_engine(settings) as gw:
        reply = gw.client(gw.create_key()).completions.create(
            model=MODEL, prompt="one two", max_tokens=3, extra_body={"ignore_eos": True}
        )
        with pytest.raises(openai.AuthenticationError):
            gw.client("sk-strata-nope").chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}]
            )
    assert reply.usage is not None
    spans = otlp.spans()
    completion = by_name(spans, "POST /v1/completions")
    assert completion.parent_span_id == ""
    assert {s.trace_id for s in spans if s.name in ("text_completion tiny", "decode")} == {
        completion.trace_id}  # fmt: skip
    refused = by_name(spans, "POST /v1/chat/completions")
    assert refused.trace_id != completion.trace_id
    assert refused.attributes["http.response.status_code"] == 401
    assert refused.attributes["error.type"] == "invalid_api_key"
    auth = children(spans, refused)
    assert list(auth) == ["auth"] and auth["auth"].status_code == ERROR
    # The refusal never became a call: only the completion is measured.
    ops = otlp.histograms(genai.OPERATION_DURATION)
    assert [p.attributes["gen_ai.operation.name"] for p in ops] == ["text_completion"]
    output = one(otlp.histograms(genai.TOKEN_USAGE), **{"gen_ai.token.type": "output"})
    assert output.sum == reply.usage.completion_tokens == 3


def test_traceparent_reaches_an_http_upstream_and_names_its_address(
    pg_dsn: str, tmp_path: Path, otlp: OtlpReceiver
) -> None:
    with MockUpstream("mock", models=("mock-model",)) as upstream:
        settings = gateway_settings(
            pg_dsn, tmp_path, upstream, gateway={"ledger_flush_ms": 20},
            telemetry={"otel": exporting_to(otlp, service_name="edge")},
        )  # fmt: skip
        with LiveGateway(settings) as gw:
            gw.client(gw.create_key()).chat.completions.create(
                model="mock-model", messages=[{"role": "user", "content": "hi"}],
                extra_headers={"traceparent": TRACEPARENT},
            )  # fmt: skip
        sent = upstream.requests[-1].headers["traceparent"]
    client_span = by_name(otlp.spans(), "chat mock-model")
    assert sent == f"00-{CALLER_TRACE}-{client_span.span_id}-01"
    port = upstream.port
    op = one(otlp.histograms(genai.OPERATION_DURATION))
    assert op.attributes == {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                             "gen_ai.request.model": "mock-model",
                             "server.address": "127.0.0.1", "server.port": port}  # fmt: skip
    assert op.resource["service.name"] == "edge"


def test_nothing_is_exported_when_off(
    pg_dsn: str, tmp_path: Path, tiny_llama_folder: Path, otlp: OtlpReceiver
) -> None:
    # An endpoint alone turns nothing on: traces and metrics are opt-in, each.
    off = {"endpoint": otlp.url, "metrics_interval_s": 0.05}
    settings = engine_settings(pg_dsn, tmp_path, tiny_llama_folder, off)
    built = BuiltinEngine.serving(
        Engine.from_settings(settings.engine, settings.model_cache_dir), settings
    )
    assert built.otel is None
    with LiveGateway(settings, built) as gw:
        assert gw.runtime.otel is None and gw.runtime.gateway.parts.otel is None
        gw.client(gw.create_key()).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2,
            extra_headers={"traceparent": TRACEPARENT},
        )  # fmt: skip
    assert otlp.requests == {}
