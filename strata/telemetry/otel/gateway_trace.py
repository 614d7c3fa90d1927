"""The gateway's OpenTelemetry: a trace per generation request and the GenAI client metrics.

A traced request is one trace, under the caller's `traceparent` when it sent one:

    POST /v1/chat/completions   (server: arrival → the call finished, stream included)
      ├─ auth
      ├─ guard
      ├─ retrieval              (only with a `rag` extension)
      ├─ limits
      └─ chat {model}           (client: dispatch → last byte relayed)
           └─ the upstream's spans (strata's engine: queue, prefill, decode)

The client span's `traceparent` travels to the upstream with the request. The tenant, the
token counts, the HTTP status and the error type are attributes. An untraced request creates
nothing: the pipeline asks `stage(None, ...)`, which is one shared no-op context manager.
This module knows no gateway types; the pipeline hands it plain values.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.util.types import AttributeValue

from strata.config import UpstreamSettings
from strata.errors import StrataError
from strata.telemetry.otel.genai import (
    ERROR_TYPE,
    INPUT_TOKENS,
    OPERATION,
    OPERATIONS,
    OUTPUT_TOKENS,
    PROVIDER,
    REQUEST_MODEL,
    SERVER_ADDRESS,
    SERVER_PORT,
    STRATA,
    ClientMetrics,
)
from strata.telemetry.otel.providers import PROPAGATOR, Otel

TENANT = "strata.tenant"
REQUEST_ID = "strata.request_id"
STATUS_CODE = "http.response.status_code"
CLIENT_CLOSED = 499  # the gateway's status for a client that went away
# HTTP semantics: a 4xx answer fails a client's span, but on the server it is the caller's error.
CLIENT_ERRORS, SERVER_ERRORS = 400, 500

TraceHeaders = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Upstream:
    """An upstream as the GenAI conventions name it: its provider and, over HTTP, address."""

    provider: str
    address: str | None = None
    port: int | None = None

    @classmethod
    def from_settings(cls, settings: UpstreamSettings) -> Upstream:
        """strata's engine in this process, or an OpenAI-compatible server at its URL."""
        if settings.kind == "engine" or settings.url is None:
            return cls(STRATA)
        url = urlsplit(settings.url)
        port = url.port or (443 if url.scheme == "https" else 80)
        return cls("openai", url.hostname, port)

    def attributes(self) -> dict[str, AttributeValue]:
        found: dict[str, AttributeValue] = {PROVIDER: self.provider}
        if self.address is not None and self.port is not None:
            found |= {SERVER_ADDRESS: self.address, SERVER_PORT: self.port}
        return found


@dataclass(frozen=True)
class CallOutcome:
    """One finished call as the gateway settled it."""

    route: str
    model: str  # the served model the upstream was asked for
    upstream: str  # its name; "" when no upstream answered
    tenant: str
    request_id: str
    status: int
    error_code: str | None
    prompt_tokens: int
    completion_tokens: int
    usage_reported: bool  # False: estimated by the gateway
    duration_s: float
    ttft_s: float | None

    @property
    def error_type(self) -> str | None:
        if self.error_code is not None:
            return self.error_code
        return str(self.status) if self.status >= 400 else None


class GatewayTelemetry:
    """Traces (when `otel` has a tracer) and client metrics (when it has a meter) for the
    upstreams named in `upstreams`."""

    def __init__(self, otel: Otel, upstreams: Mapping[str, Upstream]) -> None:
        self._tracer = otel.tracer
        self._metrics = None if otel.meter is None else ClientMetrics(otel.meter)
        self._upstreams = dict(upstreams)

    @classmethod
    def for_upstreams(cls, otel: Otel, upstreams: Iterable[UpstreamSettings]) -> GatewayTelemetry:
        return cls(otel, {u.name: Upstream.from_settings(u) for u in upstreams})

    def trace(self, headers: Mapping[str, str], route: str) -> RequestTrace | None:
        """A new trace for a request to `route`; None when traces are off."""
        if self._tracer is None:
            return None
        return RequestTrace(self._tracer, headers, route)

    def finished(self, outcome: CallOutcome, trace: RequestTrace | None) -> None:
        """Close `trace` and record the call's metrics. Calls that reached no upstream, and
        routes that are no GenAI operation, get no client metrics."""
        upstream = self._upstreams.get(outcome.upstream)
        if trace is not None:
            trace.finish(outcome, upstream)
        operation = OPERATIONS.get(outcome.route)
        if self._metrics is None or upstream is None or operation is None:
            return
        attributes = {OPERATION: operation, REQUEST_MODEL: outcome.model, **upstream.attributes()}
        usage = (outcome.prompt_tokens, outcome.completion_tokens)
        reported = usage if outcome.usage_reported else None
        self._metrics.record(attributes, outcome.duration_s, reported, outcome.error_type)


class RequestTrace:
    """The spans of one request. The root ends once: at `finish` (the call settled) or at
    `failed` (the request was refused before it became a call)."""

    def __init__(self, tracer: Tracer, headers: Mapping[str, str], route: str) -> None:
        self._tracer = tracer
        self._operation = OPERATIONS[route]
        self._root = tracer.start_span(
            f"POST {route}", PROPAGATOR.extract(headers), SpanKind.SERVER,
            {"http.request.method": "POST", "http.route": route, OPERATION: self._operation},
        )  # fmt: skip
        self._inside = set_span_in_context(self._root)
        self._upstream: Span | None = None
        self._ended = False

    def stage(self, name: str) -> _Stage:
        return _Stage(self._tracer.start_span(name, self._inside))

    def identify(self, tenant: str) -> None:
        self._root.set_attribute(TENANT, tenant)

    def upstream_headers(self, model: str) -> TraceHeaders:
        """Start the span of the call to the upstream; the headers (`traceparent`) that make
        the upstream's own spans its children."""
        self._upstream = self._tracer.start_span(
            f"{self._operation} {model}", self._inside, SpanKind.CLIENT,
            {OPERATION: self._operation, REQUEST_MODEL: model},
        )  # fmt: skip
        carrier: dict[str, str] = {}
        PROPAGATOR.inject(carrier, set_span_in_context(self._upstream))
        return tuple(carrier.items())

    def finish(self, outcome: CallOutcome, upstream: Upstream | None) -> None:
        """End the trace with what the call came to (a no-op when it has ended)."""
        if self._ended:
            return
        self._ended = True
        tokens: dict[str, AttributeValue] = {
            INPUT_TOKENS: outcome.prompt_tokens, OUTPUT_TOKENS: outcome.completion_tokens,
        }  # fmt: skip
        if self._upstream is not None:
            found = {"strata.upstream": outcome.upstream, **tokens}
            found |= upstream.attributes() if upstream is not None else {}
            self._upstream.set_attributes(found)
            _end(self._upstream, outcome.status, outcome.error_type, CLIENT_ERRORS)
        self._root.set_attributes(_root_attributes(outcome, tokens))
        _end(self._root, outcome.status, outcome.error_type, SERVER_ERRORS)

    def failed(self, exc: BaseException) -> None:
        """The request ended with `exc`; a no-op when `finish` already ended the trace."""
        if self._ended:
            return
        self._ended = True
        status, error = _status_of(exc)
        if self._upstream is not None:
            _end(self._upstream, status, error, CLIENT_ERRORS)
        _end(self._root, status, error, SERVER_ERRORS)


def _root_attributes(
    outcome: CallOutcome, tokens: dict[str, AttributeValue]
) -> dict[str, AttributeValue]:
    found: dict[str, AttributeValue] = {
        TENANT: outcome.tenant, REQUEST_ID: outcome.request_id, REQUEST_MODEL: outcome.model,
        "strata.usage_estimated": not outcome.usage_reported, **tokens,
    }  # fmt: skip
    if outcome.ttft_s is not None:
        found["strata.ttft_s"] = outcome.ttft_s
    return found


def _end(span: Span, status: int, error: str | None, errors_from: int) -> None:
    span.set_attribute(STATUS_CODE, status)
    if error is not None:
        span.set_attribute(ERROR_TYPE, error)
    if status >= errors_from:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


def _status_of(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, StrataError):
        return exc.status_code, exc.code or exc.error_type
    if isinstance(exc, asyncio.CancelledError):
        return CLIENT_CLOSED, "client_closed"
    return 500, type(exc).__qualname__


class _Stage:
    """One stage's span, ended when its block ends; a failure marks it with `error.type`."""

    __slots__ = ("_span",)

    def __init__(self, span: Span) -> None:
        self._span = span

    def __enter__(self) -> Span:
        return self._span

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            status, error = _status_of(exc)
            self._span.set_attributes({ERROR_TYPE: error, STATUS_CODE: status})
            self._span.set_status(Status(StatusCode.ERROR, error))
        self._span.end()


_NO_STAGE: AbstractContextManager[object] = nullcontext()


def stage(trace: RequestTrace | None, name: str) -> AbstractContextManager[object]:
    """The span of stage `name` of `trace`; for an untraced request, a shared no-op."""
    return _NO_STAGE if trace is None else trace.stage(name)
