"""What a benchmark measures about one request, from the client's side, and summaries of many."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BenchRequest:
    """One request of an engine-level workload: token ids in, exactly `output_len` tokens out."""

    prompt_token_ids: list[int]
    output_len: int
    arrival_s: float = 0.0  # seconds after the run starts; 0 means queued at t=0


@dataclass
class RequestRecord:
    """One request as the client saw it. Times are seconds on time.perf_counter's clock."""

    sent: float
    first_token: float | None = None
    finished: float | None = None
    token_times: list[float] = field(default_factory=list)  # arrival of each output token/chunk
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None  # e.g. "503", "timeout"; None when the request succeeded
    error_detail: str | None = None  # the server's message or the exception, for the report
    token_ids: list[int] = field(default_factory=list)  # output token ids, if the peer knows them
    request_id: str | None = None  # the x-request-id the server answered with, if any

    @property
    def ok(self) -> bool:
        return self.error is None and self.finished is not None

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.sent

    @property
    def e2e(self) -> float | None:
        return None if self.finished is None else self.finished - self.sent

    @property
    def itls(self) -> list[float]:
        """Every gap between consecutive output tokens (inter-token latency)."""
        t = self.token_times
        return [b - a for a, b in itertools.pairwise(t)]

    @property
    def mean_itl(self) -> float | None:
        """Mean time per output token after the first (vLLM's TPOT). It divides by tokens, not
        chunks, so it stays right when one streamed chunk carries several tokens."""
        if self.first_token is None or not self.token_times or self.output_tokens < 2:
            return None
        return (self.token_times[-1] - self.first_token) / (self.output_tokens - 1)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]
