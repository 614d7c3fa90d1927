"""Batch policies: how many requests run at once, how many tokens a step may carry, how long
an idle engine waits to gather a batch, and whether a new request is admitted at all.

The scheduler and the engine loop ask the policy each step; they never branch on which policy
it is. `FixedBatchPolicy` returns the configured numbers; `strata.engine.slo.SloBatchPolicy`
derives them online from measured step latencies and a latency SLO.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol


class QueueState(NamedTuple):
    """The engine's load as a new request arrives (counts exclude the new request)."""

    num_waiting: int
    num_running: int
    queued_tokens: int  # prompt tokens waiting to be prefilled, the new request's included


class BatchPolicy(Protocol):
    num_shed: int  # requests `admit` has turned away so far

    @property
    def max_num_seqs(self) -> int:
        """The batch cap: most requests running at once."""
        ...

    @property
    def token_budget(self) -> int:
        """Most tokens (prefill + decode) one step may compute."""
        ...

    @property
    def batch_window_s(self) -> float:
        """How long an idle engine waits for more requests before its first step."""
        ...

    @property
    def slo_attainment(self) -> float | None:
        """Share of recent requests whose TTFT met the SLO; None without an SLO."""
        ...

    def admit(self, queue: QueueState, now: float) -> float | None:
        """None to admit a new request; otherwise the seconds after which to retry."""
        ...

    def observe_step(self, duration_s: float, num_tokens: int, num_seqs: int, now: float) -> None:
        """Called after every step with its wall time and shape."""
        ...

    def observe_first_token(self, ttft_s: float, now: float) -> None:
        """Called when a request gets its first token (time from arrival)."""
        ...

    def observe_finish(self, now: float) -> None:
        """Called when a request finishes (for the service rate)."""
        ...


class FixedBatchPolicy:
    """The configured cap, budget and window; admits everything (the queue bound still holds)."""

    def __init__(self, max_num_seqs: int, token_budget: int, batch_window_s: float = 0.0):
        self.max_num_seqs = max_num_seqs
        self.token_budget = token_budget
        self.batch_window_s = batch_window_s
        self.slo_attainment: float | None = None
        self.num_shed = 0

    def admit(self, queue: QueueState, now: float) -> float | None:
        return None

    def observe_step(self, duration_s: float, num_tokens: int, num_seqs: int, now: float) -> None:
        pass

    def observe_first_token(self, ttft_s: float, now: float) -> None:
        pass

    def observe_finish(self, now: float) -> None:
        pass
