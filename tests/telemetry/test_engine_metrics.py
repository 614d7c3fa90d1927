"""Engine metrics: per-request latencies from deltas, engine gauges read fresh at each scrape."""

from __future__ import annotations

from dataclasses import dataclass, field

from strata.engine.outputs import Delta, EngineStats, RequestTiming
from strata.telemetry.engine_metrics import EngineMetrics, RequestRecorder


@dataclass
class FakeClock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class StatsSource:
    calls: int = 0
    running: list[int] = field(default_factory=lambda: [3])
    cap: int = 12
    attainment: float | None = None

    def __call__(self) -> EngineStats:
        self.calls += 1
        return EngineStats(
            num_running=self.running[-1],
            num_waiting=2,
            kv_blocks_total=10,
            kv_blocks_used=4,
            prefix_queries=100,
            prefix_hits=40,
            num_preemptions=1,
            num_steps=9,
            last_batch_size=3,
            prompt_tokens=60,
            generation_tokens=20,
            batch_cap=self.cap,
            token_budget=128,
            batch_window_s=0.05,
            slo_attainment=self.attainment,
            num_shed=4,
        )


def delta(ids: tuple[int, ...], reason: str | None = None, queue_s: float = 0.25) -> Delta:
    timing = RequestTiming(10.0, 10.0 + queue_s, 10.5, 11.0) if reason else None
    return Delta("r", ids, "x", reason, 7, len(ids), 0, timing)  # type: ignore[arg-type]


def sample(metrics: EngineMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels or None)


def test_a_request_feeds_ttft_gaps_e2e_queue_time_and_token_counts() -> None:
    metrics, clock = EngineMetrics(StatsSource()), FakeClock()
    recorder = RequestRecorder(metrics, arrival=100.0, clock=clock)
    clock.now = 100.2
    recorder.observe(delta((1,)))
    clock.now = 100.3
    recorder.observe(delta((2, 3)))  # two tokens after 0.1 s: two gaps of 0.05 s
    clock.now = 100.5
    recorder.observe(delta((4,), "length"))
    assert sample(metrics, "strata:time_to_first_token_seconds_count") == 1
    assert abs((sample(metrics, "strata:time_to_first_token_seconds_sum") or 0) - 0.2) < 1e-9
    assert sample(metrics, "strata:inter_token_latency_seconds_count") == 3
    assert abs((sample(metrics, "strata:inter_token_latency_seconds_sum") or 0) - 0.3) < 1e-9
    assert abs((sample(metrics, "strata:e2e_request_latency_seconds_sum") or 0) - 0.5) < 1e-9
    assert sample(metrics, "strata:request_queue_time_seconds_sum") == 0.25
    assert sample(metrics, "strata:prompt_tokens_total") == 7  # counted once per request
    assert sample(metrics, "strata:generation_tokens_total") == 4
    assert sample(metrics, "strata:request_success_total", finished_reason="length") == 1


def test_a_delta_without_tokens_only_finishes() -> None:
    metrics = EngineMetrics(StatsSource())
    recorder = metrics.recorder()
    recorder.observe(delta((1,)))
    recorder.observe(delta((), "stop"))
    assert sample(metrics, "strata:inter_token_latency_seconds_count") == 0
    assert sample(metrics, "strata:request_success_total", finished_reason="stop") == 1


def test_latency_buckets_span_one_millisecond_to_a_minute() -> None:
    metrics = EngineMetrics(StatsSource())
    text = metrics.render().decode()
    assert 'strata:time_to_first_token_seconds_bucket{le="0.001"}' in text
    assert 'strata:time_to_first_token_seconds_bucket{le="60.0"}' in text


def test_engine_stats_are_read_at_scrape_time() -> None:
    source = StatsSource()
    metrics = EngineMetrics(source)
    assert sample(metrics, "strata:num_requests_running") == 3
    source.running.append(5)
    assert sample(metrics, "strata:num_requests_running") == 5
    text = metrics.render().decode()
    for line in (
        "strata:num_requests_waiting 2.0",
        "strata:kv_cache_usage_perc 0.4",
        "strata:batch_size 3.0",
        "strata:prefix_cache_queries_total 100.0",
        "strata:prefix_cache_hits_total 40.0",
        "strata:num_preemptions_total 1.0",
    ):
        assert line in text
    assert "# TYPE strata:prefix_cache_hits_total counter" in text


def test_the_batch_policy_decisions_are_exported() -> None:
    source = StatsSource()
    metrics = EngineMetrics(source)
    assert sample(metrics, "strata:batch_cap") == 12
    assert sample(metrics, "strata:step_token_budget") == 128
    assert sample(metrics, "strata:batch_window_seconds") == 0.05
    assert sample(metrics, "strata:requests_shed_total") == 4
    assert sample(metrics, "strata:slo_attainment") is None  # no SLO set: no series
    source.attainment, source.cap = 0.97, 7
    assert sample(metrics, "strata:slo_attainment") == 0.97
    assert sample(metrics, "strata:batch_cap") == 7


def test_each_instance_has_its_own_registry() -> None:
    first, second = EngineMetrics(StatsSource()), EngineMetrics(StatsSource())
    first.recorder().observe(delta((1,), "stop"))
    assert sample(first, "strata:generation_tokens_total") == 1
    assert sample(second, "strata:generation_tokens_total") == 0


def test_telemetry_does_not_import_the_engine() -> None:
    import ast
    from pathlib import Path

    import strata.telemetry.engine_metrics as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported = [
        node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
    ] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert not [name for name in imported if name.startswith(("strata.engine", "strata.gateway"))]
