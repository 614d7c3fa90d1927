"""The OpenTelemetry providers built from `telemetry.otel`: off by default, each signal on its
own, exporting over OTLP/HTTP or gRPC to an in-process receiver; the settings checked."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from strata.config import OtelSettings, load_settings
from strata.errors import ConfigError
from strata.telemetry.otel import Otel
from tests.support.otlp_receiver import OtlpGrpcReceiver, OtlpReceiver

HAS_GRPC = importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is not None


def exercise(otel: Otel) -> None:
    """One span and one histogram sample, then the shutdown that exports them."""
    assert otel.tracer is not None and otel.meter is not None
    otel.tracer.start_span("work", attributes={"k": "v"}).end()
    otel.meter.create_histogram("strata.test.seconds", unit="s").record(0.25, {"a": "b"})
    otel.shutdown()


def test_off_by_default_and_an_endpoint_alone_turns_nothing_on() -> None:
    assert Otel.from_settings(OtelSettings()) is None
    assert Otel.from_settings(OtelSettings(endpoint="http://127.0.0.1:4318")) is None


def test_each_signal_is_on_by_itself() -> None:
    traces = Otel.from_settings(OtelSettings(traces=True, endpoint="http://127.0.0.1:9"))
    assert traces is not None and traces.meter is None and traces.tracer is not None
    metrics = Otel.from_settings(OtelSettings(metrics=True, endpoint="http://127.0.0.1:9"))
    assert metrics is not None and metrics.tracer is None and metrics.meter is not None
    metrics.shutdown()
    traces.shutdown()


def test_spans_and_metrics_reach_an_otlp_http_collector_with_the_headers() -> None:
    with OtlpReceiver() as otlp:
        settings = OtelSettings(traces=True, metrics=True, endpoint=otlp.url + "/",
                                headers={"x-api-key": "k-123"}, service_name="api")  # fmt: skip
        otel = Otel.from_settings(settings)
        assert otel is not None
        exercise(otel)
        assert otlp.requests == {"/v1/traces": 1, "/v1/metrics": 1}
        assert otlp.headers["x-api-key"] == "k-123"
        assert otlp.headers["content-type"] == "application/x-protobuf"
    (span,) = otlp.spans()
    assert span.name == "work" and span.attributes == {"k": "v"}
    assert span.resource["service.name"] == "api" and "service.version" in span.resource
    (point,) = otlp.histograms("strata.test.seconds")
    assert (point.count, point.sum, point.attributes) == (1, 0.25, {"a": "b"})


@pytest.mark.skipif(not HAS_GRPC, reason="the otlp-grpc extra is not installed")
def test_the_grpc_protocol_reaches_an_otlp_grpc_collector() -> None:
    with OtlpGrpcReceiver() as otlp:
        settings = OtelSettings(traces=True, metrics=True, endpoint=otlp.url, protocol="grpc",
                                headers={"x-api-key": "k-123"})  # fmt: skip
        otel = Otel.from_settings(settings)
        assert otel is not None
        exercise(otel)
        assert otlp.headers["x-api-key"] == "k-123"
    assert [s.name for s in otlp.spans()] == ["work"]
    assert otlp.histograms("strata.test.seconds")[0].sum == 0.25


def test_grpc_without_its_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc", None)  # not there
    settings = OtelSettings(traces=True, endpoint="http://127.0.0.1:4317", protocol="grpc")
    with pytest.raises(ConfigError, match=r"strata\[otlp-grpc\]"):
        Otel.from_settings(settings)


@pytest.mark.parametrize(
    ("otel", "named"),
    [
        ({"traces": True}, "telemetry.otel.endpoint is empty"),
        ({"metrics": True}, "telemetry.otel.metrics is on"),
        ({"endpoint": "collector:4318"}, "must start with http:// or https://"),
        ({"sample_ratio": 1.5}, "telemetry.otel.sample_ratio"),
        ({"protocol": "thrift"}, "telemetry.otel.protocol"),
        ({"exporter": "x"}, "telemetry.otel.exporter: remove it"),
    ],
)
def test_bad_settings_name_the_key(otel: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.").replace("(", r"\(")):
        load_settings(telemetry={"otel": otel})


def test_headers_are_secrets_and_the_environment_sets_the_section(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRATA_TELEMETRY__OTEL__TRACES", "true")
    monkeypatch.setenv("STRATA_TELEMETRY__OTEL__ENDPOINT", "https://otel.example:4318")
    settings = load_settings(telemetry={"otel": {"headers": {"authorization": "Bearer s3"}}})
    assert settings.telemetry.otel.traces and settings.telemetry.otel.endpoint
    shown = settings.model_dump(mode="json")["telemetry"]["otel"]["headers"]
    assert shown == {"authorization": "**********"}
    with pytest.raises(ValidationError):
        OtelSettings(metrics=True)
