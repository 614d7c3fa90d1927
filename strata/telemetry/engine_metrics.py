"""Prometheus metrics for a serving engine, named as vLLM users know them under `strata:`.

Per-request latencies and token counts come from a `RequestRecorder` the HTTP layer feeds
with each delta it receives. Engine-wide gauges and cumulative counters (queue depth, KV-cache
use, prefix-cache hits, preemptions) are read from an engine-stats callable at scrape time, so
they are never stale and the engine needs no reference to this module. Everything lives in a
dedicated `CollectorRegistry`: nothing is registered globally.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PREFIX = "strata:"
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds, from 1 ms to 60 s: fine steps where token latencies live, coarse where queues do.
LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15,
    0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 30.0, 40.0, 60.0,
)  # fmt: skip


class EngineStatsLike(Protocol):
    """What the metrics read from an engine snapshot (`strata.engine.outputs.EngineStats`)."""

    @property
    def num_running(self) -> int: ...
    @property
    def num_waiting(self) -> int: ...
    @property
    def num_waiting_keys(self) -> int: ...
    @property
    def last_batch_size(self) -> int: ...
    @property
    def prefix_queries(self) -> int: ...
    @property
    def prefix_hits(self) -> int: ...
    @property
    def num_preemptions(self) -> int: ...
    @property
    def kv_usage(self) -> float: ...
    @property
    def batch_cap(self) -> int: ...
    @property
    def token_budget(self) -> int: ...
    @property
    def batch_window_s(self) -> float: ...
    @property
    def slo_attainment(self) -> float | None: ...
    @property
    def num_shed(self) -> int: ...
    @property
    def replica_s(self) -> float: ...
    @property
    def busy_s(self) -> float: ...
    @property
    def idle_s(self) -> float: ...


class TimingLike(Protocol):
    """The engine's timestamps of one request (`strata.engine.outputs.RequestTiming`)."""

    @property
    def arrival(self) -> float: ...
    @property
    def first_scheduled(self) -> float | None: ...
    @property
    def first_token(self) -> float | None: ...
    @property
    def finished(self) -> float | None: ...
    @property
    def queue_time_s(self) -> float | None: ...


class DeltaLike(Protocol):
    """What the recorder reads from one delta (`strata.engine.outputs.Delta`)."""

    @property
    def token_ids(self) -> Sequence[int]: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...
    @property
    def timing(self) -> TimingLike | None: ...


@dataclass(frozen=True)
class FinishedRequest:
    """One finished request as its recorder saw it (time.perf_counter seconds), for the
    OpenTelemetry side (`strata.telemetry.otel`)."""

    arrival: float  # the HTTP layer received it
    first_token_at: float | None  # the first token reached the HTTP layer
    finished_at: float  # the last delta reached the HTTP layer
    prompt_tokens: int
    cached_tokens: int
    output_tokens: int
    finish_reason: str
    timing: TimingLike | None  # the engine's own timestamps


OnFinish = Callable[[FinishedRequest], None]


class Recorder(Protocol):
    """What the HTTP layer feeds every delta of one request to."""

    def observe(self, delta: DeltaLike) -> None: ...


class NullRecorder:
    """Records nothing: per-request instrumentation switched off
    (`telemetry.engine_instrumentation: false`), e.g. to measure what it costs."""

    def observe(self, delta: DeltaLike) -> None:
        return None


class EngineMetrics:
    """The engine's metric families in one private registry; `render()` is the scrape body."""

    def __init__(self, stats: Callable[[], EngineStatsLike]) -> None:
        self.registry = CollectorRegistry()
        self.ttft = self._latency("time_to_first_token_seconds", "Time to first token.")
        self.inter_token = self._latency("inter_token_latency_seconds", "Time between tokens.")
        self.e2e = self._latency("e2e_request_latency_seconds", "Arrival to last token.")
        self.queue_time = self._latency(
            "request_queue_time_seconds", "Arrival to first scheduled in the engine."
        )
        self.prompt_tokens = self._counter("prompt_tokens", "Prompt tokens of requests.")
        self.generation_tokens = self._counter("generation_tokens", "Tokens generated.")
        self.request_success = Counter(
            f"{PREFIX}request_success",
            "Finished requests by finish reason.",
            ["finished_reason"],
            registry=self.registry,
        )
        self.registry.register(EngineStatsCollector(stats))

    def recorder(
        self, arrival: float | None = None, on_finish: OnFinish | None = None
    ) -> RequestRecorder:
        """A recorder for one request that arrived at `arrival` (time.perf_counter seconds);
        `on_finish` is told about the request once its last delta is in."""
        return RequestRecorder(self, arrival, on_finish=on_finish)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def _latency(self, name: str, documentation: str) -> Histogram:
        return Histogram(
            PREFIX + name, documentation, buckets=LATENCY_BUCKETS_S, registry=self.registry
        )

    def _counter(self, name: str, documentation: str) -> Counter:
        return Counter(PREFIX + name, documentation, registry=self.registry)


class RequestRecorder:
    """Turns one request's stream of deltas into latency and token observations.

    TTFT and end-to-end latency run from `arrival` (when the HTTP layer received the request),
    so they include tokenization; queue time comes from the engine's own timing on the last
    delta. A delta carrying k tokens after a gap g counts as k inter-token gaps of g / k.
    """

    def __init__(
        self,
        metrics: EngineMetrics,
        arrival: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
        on_finish: OnFinish | None = None,
    ) -> None:
        self._metrics = metrics
        self._clock = clock
        self._on_finish = on_finish
        self.arrival = clock() if arrival is None else arrival
        self._first_token_at: float | None = None
        self._last_token_at: float | None = None
        self._counted_prompt = False

    def observe(self, delta: DeltaLike) -> None:
        now = self._clock()
        if not self._counted_prompt:
            self._metrics.prompt_tokens.inc(delta.prompt_tokens)
            self._counted_prompt = True
        if delta.token_ids:
            self._observe_tokens(len(delta.token_ids), now)
        if delta.finish_reason is not None:
            self._observe_finish(delta, now)

    def _observe_tokens(self, count: int, now: float) -> None:
        self._metrics.generation_tokens.inc(count)
        if self._last_token_at is None:
            self._first_token_at = now
            self._metrics.ttft.observe(now - self.arrival)
        else:
            gap = (now - self._last_token_at) / count
            for _ in range(count):
                self._metrics.inter_token.observe(gap)
        self._last_token_at = now

    def _observe_finish(self, delta: DeltaLike, now: float) -> None:
        self._metrics.e2e.observe(now - self.arrival)
        self._metrics.request_success.labels(finished_reason=delta.finish_reason).inc()
        queue_time = delta.timing.queue_time_s if delta.timing is not None else None
        if queue_time is not None:
            self._metrics.queue_time.observe(max(0.0, queue_time))
        if self._on_finish is not None:
            self._on_finish(self._finished(delta, now))

    def _finished(self, delta: DeltaLike, now: float) -> FinishedRequest:
        assert delta.finish_reason is not None
        return FinishedRequest(
            self.arrival, self._first_token_at, now, delta.prompt_tokens, delta.cached_tokens,
            delta.completion_tokens, delta.finish_reason, delta.timing,
        )  # fmt: skip


class EngineStatsCollector:
    """Reads a fresh engine snapshot at every scrape and reports it as gauges and counters."""

    def __init__(self, stats: Callable[[], EngineStatsLike]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        stats = self._stats()
        yield _gauge("num_requests_running", "Requests in the running batch.", stats.num_running)
        yield _gauge("num_requests_waiting", "Requests waiting to be scheduled.", stats.num_waiting)
        yield _gauge(
            "num_waiting_fairness_keys",
            "Distinct fairness keys among the waiting requests.",
            stats.num_waiting_keys,
        )
        yield _gauge("kv_cache_usage_perc", "KV-cache blocks in use (0 to 1).", stats.kv_usage)
        yield _gauge("batch_size", "Requests in the most recent step.", stats.last_batch_size)
        yield _counter("prefix_cache_queries", "Prompt tokens looked up.", stats.prefix_queries)
        yield _counter("prefix_cache_hits", "Prompt tokens found cached.", stats.prefix_hits)
        yield _counter("num_preemptions", "Requests preempted.", stats.num_preemptions)
        yield from _batching_metrics(stats)
        yield from _replica_time_metrics(stats)


def _batching_metrics(stats: EngineStatsLike) -> Iterable[Metric]:
    """The batch policy's current decisions (moved online when an SLO is set)."""
    yield _gauge("batch_cap", "Most requests allowed to run at once.", stats.batch_cap)
    yield _gauge("step_token_budget", "Most tokens one step may compute.", stats.token_budget)
    yield _gauge("batch_window_seconds", "Batching window of an idle engine.", stats.batch_window_s)
    yield _counter("requests_shed", "Requests turned away to hold the SLO.", stats.num_shed)
    if stats.slo_attainment is not None:
        yield _gauge(
            "slo_attainment", "Share of recent requests within the TTFT SLO.", stats.slo_attainment
        )


def _replica_time_metrics(stats: EngineStatsLike) -> Iterable[Metric]:
    """How the replica's seconds were spent (`strata.engine.accounting`): busy + idle =
    replica seconds. Idle seconds times the GPU-hour price / 3600 is the idle cost."""
    yield _counter("engine_replica_seconds", "Seconds since the engine started.", stats.replica_s)
    yield _counter("engine_busy_seconds", "Seconds with a request running.", stats.busy_s)
    yield _counter("engine_idle_seconds", "Seconds with no request running.", stats.idle_s)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, documentation, value=value)
