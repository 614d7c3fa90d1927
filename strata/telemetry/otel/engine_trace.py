"""What the engine server reports to OpenTelemetry for each finished request: the GenAI server
metrics, and a span tree under the caller's `traceparent` (the gateway's upstream span):

    chat {model}   (server: HTTP arrival → last delta)
      ├─ queue     (arrival in the engine → first scheduled)
      ├─ prefill   (first scheduled → first token)
      └─ decode    (first token → finished)

The spans are made after the fact from the engine's own timestamps, so a request costs nothing
here while it runs. A request whose stream is closed before its last delta (its client went
away mid-answer) reports nothing; the gateway's trace still shows it. This module knows no
engine types: it reads `FinishedRequest` values.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.util.types import AttributeValue

from strata.telemetry.engine_metrics import FinishedRequest, OnFinish
from strata.telemetry.otel.genai import (
    ERROR_TYPE,
    FINISH_REASONS,
    INPUT_TOKENS,
    OPERATION,
    OUTPUT_TOKENS,
    PROVIDER,
    REQUEST_MODEL,
    RESPONSE_MODEL,
    SERVER_ADDRESS,
    SERVER_PORT,
    STRATA,
    ServerMetrics,
)
from strata.telemetry.otel.providers import PROPAGATOR, Otel

ABORTED = "aborted"  # error.type of a request the engine aborted (client gone, shutdown, failure)
REQUEST_ID = "strata.request_id"


class EngineTelemetry:
    """The engine server's OpenTelemetry, for the model it serves; `server` is where it listens
    (None when it runs inside the gateway's process)."""

    def __init__(self, otel: Otel, model: str, server: tuple[str, int] | None = None) -> None:
        self._tracer = otel.tracer
        self._metrics = None if otel.meter is None else ServerMetrics(otel.meter)
        self._model = model
        self._base: dict[str, AttributeValue] = {PROVIDER: STRATA, RESPONSE_MODEL: model}
        if server is not None:
            self._base |= {SERVER_ADDRESS: server[0], SERVER_PORT: server[1]}

    def request(self, headers: Mapping[str, str], operation: str, model: str | None) -> OnFinish:
        """The report to make when a request for `operation` (`chat`, `text_completion`) on
        `model` (as the caller named it) finishes; `headers` are its HTTP headers (traceparent,
        x-request-id)."""
        requested = model or self._model
        attributes = {**self._base, OPERATION: operation, REQUEST_MODEL: requested}
        if self._tracer is None:
            return _Report(attributes, self._metrics)
        name = f"{operation} {requested}"  # the GenAI conventions' span name
        parent = PROPAGATOR.extract(headers)
        spans = _Spans(self._tracer, name, parent, headers.get("x-request-id"))
        return _Report(attributes, self._metrics, spans)


class _Report:
    def __init__(
        self,
        attributes: dict[str, AttributeValue],
        metrics: ServerMetrics | None,
        spans: _Spans | None = None,
    ) -> None:
        self._attributes = attributes
        self._metrics = metrics
        self._spans = spans

    def __call__(self, done: FinishedRequest) -> None:
        error = ABORTED if done.finish_reason == "abort" else None
        if self._metrics is not None:
            ttft = None if done.first_token_at is None else done.first_token_at - done.arrival
            duration = done.finished_at - done.arrival
            self._metrics.record(self._attributes, duration, ttft, done.output_tokens, error)
        if self._spans is not None:
            self._spans.record(self._attributes, done, error)


class _Spans:
    """The span tree of one request, made when it has finished."""

    def __init__(self, tracer: Tracer, name: str, parent: Context, request_id: str | None) -> None:
        self._tracer = tracer
        self._name = name
        self._parent = parent
        self._request_id = request_id

    def record(
        self, attributes: dict[str, AttributeValue], done: FinishedRequest, error: str | None
    ) -> None:
        clock = _EpochClock()
        root = self._tracer.start_span(
            self._name, self._parent, SpanKind.SERVER, self._root_attributes(attributes, done),
            start_time=clock.ns(done.arrival),
        )  # fmt: skip
        if error is not None:
            root.set_attribute(ERROR_TYPE, error)
            root.set_status(Status(StatusCode.ERROR, error))
        inside = set_span_in_context(root)
        for phase, start, end, phase_attributes in _phases(done):
            if start is not None and end is not None:
                span = self._tracer.start_span(
                    phase, inside, attributes=phase_attributes, start_time=clock.ns(start)
                )
                span.end(end_time=clock.ns(end))
        root.end(end_time=clock.ns(done.finished_at))

    def _root_attributes(
        self, attributes: dict[str, AttributeValue], done: FinishedRequest
    ) -> dict[str, AttributeValue]:
        extra: dict[str, AttributeValue] = {
            INPUT_TOKENS: done.prompt_tokens,
            OUTPUT_TOKENS: done.output_tokens,
            FINISH_REASONS: (done.finish_reason,),
        }
        if self._request_id is not None:
            extra[REQUEST_ID] = self._request_id
        return attributes | extra


def _phases(
    done: FinishedRequest,
) -> list[tuple[str, float | None, float | None, dict[str, Any]]]:
    """(name, start, end, attributes) of the engine phases its timing covers."""
    timing = done.timing
    if timing is None:
        return []
    prompt = {
        "strata.prompt_tokens": done.prompt_tokens,
        "strata.cached_tokens": done.cached_tokens,
    }
    return [
        ("queue", timing.arrival, timing.first_scheduled, {}),
        ("prefill", timing.first_scheduled, timing.first_token, prompt),
        (
            "decode",
            timing.first_token,
            timing.finished,
            {"strata.output_tokens": done.output_tokens},
        ),
    ]


class _EpochClock:
    """time.perf_counter seconds to the Unix-epoch nanoseconds span timestamps are in.

    The offset is read between two perf_counter readings, best of three: a thread switch
    between the two clock reads (common on a busy host) would otherwise shift every span."""

    def __init__(self) -> None:
        readings = []
        for _ in range(3):
            before, wall, after = time.perf_counter_ns(), time.time_ns(), time.perf_counter_ns()
            readings.append((after - before, wall - (before + after) // 2))
        self._offset_ns = min(readings)[1]

    def ns(self, perf_s: float) -> int:
        return self._offset_ns + int(perf_s * 1e9)
