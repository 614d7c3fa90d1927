"""Typed values the engine hands out: per-request deltas, timings and engine-wide stats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True)
class RequestTiming:
    """Monotonic timestamps (time.perf_counter seconds) of one request's life."""

    arrival: float
    first_scheduled: float | None
    first_token: float | None
    finished: float | None

    @property
    def queue_time_s(self) -> float | None:
        return None if self.first_scheduled is None else self.first_scheduled - self.arrival

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.arrival


@dataclass(frozen=True)
class Delta:
    """What one request produced since its previous delta.

    `text` is the newly decoded text (stop strings already cut off); `token_ids` the new
    token ids. The last delta of a request has `finish_reason` set and carries `timing` and
    `replica_seconds` (its share of replica time so far, `strata.engine.accounting`).
    """

    request_id: str
    token_ids: tuple[int, ...]
    text: str
    finish_reason: FinishReason | None
    prompt_tokens: int
    completion_tokens: int  # cumulative
    cached_tokens: int  # prompt tokens served from the prefix cache
    timing: RequestTiming | None = None
    replica_seconds: float | None = None


@dataclass(frozen=True)
class EngineStats:
    """A snapshot of the engine for metrics and health."""

    num_running: int
    num_waiting: int
    kv_blocks_total: int
    kv_blocks_used: int
    prefix_queries: int  # prompt tokens looked up in the prefix cache (cumulative)
    prefix_hits: int  # of those, tokens found (cumulative)
    num_preemptions: int  # cumulative
    num_steps: int  # cumulative
    last_batch_size: int
    prompt_tokens: int  # cumulative prompt tokens computed (excluding prefix-cache hits)
    generation_tokens: int  # cumulative
    batch_cap: int = 0  # current max running requests (the SLO controller moves it)
    token_budget: int = 0  # current most tokens per step
    batch_window_s: float = 0.0  # current batching window
    slo_attainment: float | None = None  # share of recent requests within the TTFT SLO
    num_shed: int = 0  # cumulative requests turned away to protect the SLO
    replica_s: float = 0.0  # seconds since the replica started (= busy_s + idle_s)
    busy_s: float = 0.0  # of those, seconds with a request running
    idle_s: float = 0.0  # of those, seconds with none
    num_waiting_keys: int = 0  # distinct fairness keys among the waiting requests

    @property
    def kv_usage(self) -> float:
        return self.kv_blocks_used / self.kv_blocks_total if self.kv_blocks_total else 0.0

    @property
    def prefix_hit_rate(self) -> float:
        return self.prefix_hits / self.prefix_queries if self.prefix_queries else 0.0
