"""An OTLP collector for tests, in this process: it accepts what the SDK's exporters send,
decodes it with opentelemetry-proto's generated classes and keeps it as plain values.
`OtlpReceiver` takes OTLP/HTTP posts to `/v1/traces` and `/v1/metrics`; `OtlpGrpcReceiver`
serves the OTLP gRPC services (needs grpcio, from the `otlp-grpc` extra).

    with OtlpReceiver() as otlp:            # otlp.url: http://127.0.0.1:<port>
        ...                                 # strata with telemetry.otel.endpoint = otlp.url
        otlp.spans(), otlp.histograms("gen_ai.server.time_to_first_token")
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind
    start_ns: int
    end_ns: int
    status_code: int  # 0 unset, 1 ok, 2 error
    attributes: Mapping[str, Any]
    resource: Mapping[str, Any]


@dataclass(frozen=True)
class HistogramPoint:
    """One data point of a histogram as last exported (cumulative)."""

    name: str
    unit: str
    attributes: Mapping[str, Any]
    count: int
    sum: float
    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]
    resource: Mapping[str, Any]


class _Received:
    """What arrived, by either transport; `requests` counts exports by signal path and
    `headers` keeps the last request's headers (or gRPC metadata)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._points: dict[tuple[str, frozenset[tuple[str, Any]]], HistogramPoint] = {}
        self.requests: dict[str, int] = {}
        self.headers: dict[str, str] = {}

    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    def histograms(self, name: str) -> list[HistogramPoint]:
        """The latest point of each attribute set of the histogram `name`."""
        with self._lock:
            return [p for (n, _), p in self._points.items() if n == name]

    def metric_names(self) -> set[str]:
        with self._lock:
            return {n for n, _ in self._points}

    def wait_for(self, ready: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert time.monotonic() < deadline, "the receiver did not get what was expected"
            time.sleep(0.02)

    # -- decoding --------------------------------------------------------------------------

    def _note(self, path: str, headers: Mapping[str, str]) -> None:
        with self._lock:
            self.requests[path] = self.requests.get(path, 0) + 1
            self.headers = {k.lower(): v for k, v in headers.items()}

    def _traces(self, request: ExportTraceServiceRequest) -> ExportTraceServiceResponse:
        found = [
            _span(span, _attributes(rs.resource.attributes))
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]
        with self._lock:
            self._spans.extend(found)
        return ExportTraceServiceResponse()

    def _metrics(self, request: ExportMetricsServiceRequest) -> ExportMetricsServiceResponse:
        for rm in request.resource_metrics:
            resource = _attributes(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.WhichOneof("data") == "histogram":
                        self._keep_points(metric, resource)
        return ExportMetricsServiceResponse()

    def _keep_points(self, metric: Any, resource: Mapping[str, Any]) -> None:
        for dp in metric.histogram.data_points:
            attributes = _attributes(dp.attributes)
            point = HistogramPoint(
                metric.name, metric.unit, attributes, dp.count, dp.sum,
                tuple(dp.explicit_bounds), tuple(dp.bucket_counts), resource,
            )  # fmt: skip
            with self._lock:
                self._points[(metric.name, frozenset(attributes.items()))] = point


class OtlpReceiver(_Received):
    """OTLP/HTTP (protobuf) on a free loopback port, from a thread."""

    def __init__(self) -> None:
        super().__init__()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _decode(self, path: str, body: bytes) -> bytes | None:
        if path == "/v1/traces":
            return self._traces(ExportTraceServiceRequest.FromString(body)).SerializeToString()
        if path == "/v1/metrics":
            return self._metrics(ExportMetricsServiceRequest.FromString(body)).SerializeToString()
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                answer = receiver._decode(self.path, body)
                if answer is None:
                    self.send_error(404)
                    return
                receiver._note(self.path, dict(self.headers.items()))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet

        return Handler


def _span(span: Any, resource: Mapping[str, Any]) -> ReceivedSpan:
    return ReceivedSpan(
        span.name, span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(),
        span.kind, span.start_time_unix_nano, span.end_time_unix_nano, span.status.code,
        _attributes(span.attributes), resource,
    )  # fmt: skip


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(v) for v in value.array_value.values)
    return getattr(value, kind) if kind is not None else None


class OtlpGrpcReceiver(_Received):
    """The OTLP gRPC trace and metrics services on a free loopback port (insecure)."""

    def __init__(self) -> None:
        super().__init__()
        import grpc  # the otlp-grpc extra
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as traces

        receiver = self

        class Traces(traces.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                receiver._note("/v1/traces", dict(context.invocation_metadata()))
                return receiver._traces(request)

        class Metrics(metrics.MetricsServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                receiver._note("/v1/metrics", dict(context.invocation_metadata()))
                return receiver._metrics(request)

        self._server = grpc.server(ThreadPoolExecutor(max_workers=2))
        traces.add_TraceServiceServicer_to_server(Traces(), self._server)
        metrics.add_MetricsServiceServicer_to_server(Metrics(), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> OtlpGrpcReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None)
