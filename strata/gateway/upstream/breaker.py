"""A circuit breaker per upstream: stop sending requests to one that keeps failing.

    closed ──`failures` consecutive failures──▶ open ──`reset_s` later──▶ half-open
      ▲                                           ▲                           │ one trial
      └────────────── trial succeeds ─────────────┼──────── trial fails ──────┘

Every attempt takes a permit with `acquire()` and ends with exactly one of `record_success()`,
`record_failure()` or `release()` (the attempt ended without a verdict, e.g. the caller went
away). In half-open state only one attempt at a time gets a permit: the trial. A failure after
a success (a stream that broke midway) may be recorded without a permit. One event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = failures
        self.reset_s = reset_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None  # None while closed
        self._trial = False  # a half-open trial is in flight

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.reset_s else "open"

    def allows(self) -> bool:
        """Would `acquire()` grant a permit now? (Takes none.)"""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._trial)

    def acquire(self) -> bool:
        if self._opened_at is None:
            return True
        if not self.allows():
            return False
        self._trial = True
        return True

    def record_success(self) -> None:
        self._consecutive = 0
        self._opened_at = None
        self._trial = False

    def record_failure(self) -> None:
        self._consecutive += 1
        if self._trial or self._consecutive >= self.threshold:
            self._opened_at = self._clock()
        self._trial = False

    def release(self) -> None:
        self._trial = False

    def retry_in(self) -> float:
        """Seconds until an open breaker lets a trial through (0 unless open)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.reset_s - self._clock())
