"""The OpenTelemetry SDK set up from `telemetry.otel.*`: one tracer provider and one meter provider
that export over OTLP, or nothing at all.

The providers are owned objects, never the SDK's process-wide globals: two gateways in one
process (tests) keep their own, and whoever builds an `Otel` shuts it down, which flushes what
is still buffered. With `telemetry.otel.traces` and `.metrics` both off (the default) there
is no `Otel`, and callers skip every OpenTelemetry call behind one `is None` check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from strata import __version__
from strata.errors import ConfigError

if TYPE_CHECKING:
    from strata.config import OtelSettings

SCOPE = "strata"  # the instrumentation scope every strata tracer and meter reports under
PROPAGATOR = TraceContextTextMapPropagator()  # W3C `traceparent` / `tracestate`, in and out


@dataclass(frozen=True)
class Otel:
    """The process's providers; a signal that is off has None."""

    tracer_provider: TracerProvider | None
    meter_provider: MeterProvider | None

    @classmethod
    def from_settings(cls, settings: OtelSettings) -> Otel | None:
        """Providers exporting to `settings.endpoint`; None when traces and metrics are
        both off. Raises `ConfigError` when the chosen OTLP protocol cannot be loaded."""
        if not (settings.traces or settings.metrics):
            return None
        assert settings.endpoint is not None  # the settings validate it
        resource = Resource.create(
            {"service.name": settings.service_name, "service.version": __version__}
        )
        exporters = _Exporters(settings)
        return cls(
            _tracer_provider(settings, resource, exporters) if settings.traces else None,
            _meter_provider(settings, resource, exporters) if settings.metrics else None,
        )

    @property
    def tracer(self) -> Tracer | None:
        if self.tracer_provider is None:
            return None
        return self.tracer_provider.get_tracer(SCOPE, __version__)

    @property
    def meter(self) -> Meter | None:
        if self.meter_provider is None:
            return None
        return self.meter_provider.get_meter(SCOPE, __version__)

    def shutdown(self) -> None:
        """Export what is buffered (spans, a last metrics collection) and stop the exporters."""
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()
        if self.meter_provider is not None:
            self.meter_provider.shutdown()


def _tracer_provider(
    settings: OtelSettings, resource: Resource, exporters: _Exporters
) -> TracerProvider:
    # A caller's sampling decision (its traceparent's flag) is followed; new traces are kept
    # at the configured ratio.
    sampler = ParentBased(TraceIdRatioBased(settings.sample_ratio))
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(exporters.spans()))
    return provider


def _meter_provider(
    settings: OtelSettings, resource: Resource, exporters: _Exporters
) -> MeterProvider:
    reader = PeriodicExportingMetricReader(
        exporters.metrics(), export_interval_millis=settings.metrics_interval_s * 1000
    )
    return MeterProvider(resource=resource, metric_readers=[reader])


class _Exporters:
    """OTLP exporters for the configured protocol. http/protobuf posts to the collector's
    `/v1/traces` and `/v1/metrics` under the endpoint; grpc (the `otlp-grpc` extra) calls the
    endpoint's host and port, in plain text for an http:// endpoint."""

    def __init__(self, settings: OtelSettings) -> None:
        assert settings.endpoint is not None
        self.endpoint = settings.endpoint.rstrip("/")
        self.grpc = settings.protocol == "grpc"
        self.headers = {name: value.get_secret_value() for name, value in settings.headers.items()}
        self.timeout_s = settings.timeout_s
        if self.grpc:
            _require_grpc()

    def spans(self) -> SpanExporter:
        if self.grpc:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )

            return GrpcSpanExporter(
                endpoint=self.endpoint, insecure=self._insecure, headers=self.headers,
                timeout=self.timeout_s,
            )  # fmt: skip
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(
            endpoint=f"{self.endpoint}/v1/traces", headers=self.headers, timeout=self.timeout_s
        )

    def metrics(self) -> MetricExporter:
        if self.grpc:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )

            return GrpcMetricExporter(
                endpoint=self.endpoint, insecure=self._insecure, headers=self.headers,
                timeout=self.timeout_s,
            )  # fmt: skip
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(
            endpoint=f"{self.endpoint}/v1/metrics", headers=self.headers, timeout=self.timeout_s
        )

    @property
    def _insecure(self) -> bool:
        return self.endpoint.startswith("http://")


def _require_grpc() -> None:
    try:
        import opentelemetry.exporter.otlp.proto.grpc  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "telemetry.otel.protocol is 'grpc' but the gRPC exporter is not installed: "
            "pip install 'strata[otlp-grpc]', or use 'http/protobuf'."
        ) from exc
