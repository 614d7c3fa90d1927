"""OpenTelemetry providers that keep what they record in memory, for the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from strata.telemetry.otel import Otel


@dataclass
class MemoryOtel:
    otel: Otel
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def points(self, name: str) -> list[HistogramDataPoint]:
        data = self.reader.get_metrics_data()
        if data is None:
            return []
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
            if isinstance(point, HistogramDataPoint)
        ]


def memory_otel(sample_ratio: float = 1.0, traces: bool = True, metrics: bool = True) -> MemoryOtel:
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[reader])
    otel = Otel(tracer_provider if traces else None, meter_provider if metrics else None)
    return MemoryOtel(otel, exporter, reader)


@pytest.fixture
def memory() -> Iterator[MemoryOtel]:
    recorded = memory_otel()
    yield recorded
    recorded.otel.shutdown()


def attributes(point: Any) -> dict[str, Any]:
    return dict(point.attributes or {})
