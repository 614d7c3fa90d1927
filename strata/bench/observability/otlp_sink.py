"""An OTLP/HTTP receiver in the benchmark's own process, standing in for a collector.

It answers every export at once (an empty protobuf reply is a full success), counts the exports
and their bytes per signal, and keeps from each trace only what the accuracy run reads: every
engine `prefill` span's request id and the engine's TTFT (the `chat {model}` server span's
start to the end of its `prefill` child, both from the engine's own clock).

    with OtlpSink(keep_spans=True) as sink:   # sink.url: http://127.0.0.1:<port>
        ...                                   # a strata exporting to sink.url
        sink.engine_ttft_ms()                 # {x-request-id: ms}
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

REQUEST_ID = "strata.request_id"  # the engine's span attribute (strata.telemetry.otel)
PREFILL = "prefill"


@dataclass(frozen=True)
class _Span:
    span_id: bytes
    parent_id: bytes
    name: str
    start_ns: int
    end_ns: int
    request_id: str | None


class OtlpSink:
    """Accepts OTLP/HTTP posts to `/v1/traces` and `/v1/metrics` on a free loopback port;
    decodes traces only with `keep_spans` (decoding costs CPU the server under test shares)."""

    def __init__(self, keep_spans: bool = False) -> None:
        self.keep_spans = keep_spans
        self._lock = threading.Lock()
        self._spans: dict[bytes, _Span] = {}
        self.exports: dict[str, int] = {}  # path -> posts received
        self.bytes: dict[str, int] = {}  # path -> body bytes received
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def engine_ttft_ms(self) -> dict[str, float]:
        """Per `x-request-id`: the engine's arrival to its first token, in milliseconds."""
        with self._lock:
            spans = dict(self._spans)
        ttft = {}
        for span in spans.values():
            parent = spans.get(span.parent_id)
            if span.name == PREFILL and parent is not None and parent.request_id is not None:
                ttft[parent.request_id] = (span.end_ns - parent.start_ns) / 1e6
        return ttft

    def receive(self, path: str, body: bytes) -> None:
        with self._lock:
            self.exports[path] = self.exports.get(path, 0) + 1
            self.bytes[path] = self.bytes.get(path, 0) + len(body)
        if self.keep_spans and path == "/v1/traces":
            spans = _spans(ExportTraceServiceRequest.FromString(body))
            with self._lock:
                self._spans.update((s.span_id, s) for s in spans)


def _spans(request: ExportTraceServiceRequest) -> list[_Span]:
    return [
        _Span(span.span_id, span.parent_span_id, span.name, span.start_time_unix_nano,
              span.end_time_unix_nano, _request_id(span.attributes))
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]  # fmt: skip


def _request_id(attributes: Any) -> str | None:
    for attribute in attributes:
        if attribute.key == REQUEST_ID:
            return str(attribute.value.string_value)
    return None


def _handler(sink: OtlpSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            sink.receive(self.path, body)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None  # quiet: one line per export would drown the progress lines

    return Handler
