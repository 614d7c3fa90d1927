"""Replica time: who used the replica's seconds, for pricing self-hosted serving.

A replica's clock starts when its engine core is built. From then on every second is either
*busy* (some request was running) or *idle* (none was), so busy + idle = replica-seconds at any
moment by construction: idle time is accumulated, and busy time is whatever is left.

Busy time is billed step by step: all the time since the previous step ended (the step itself
and the loop's work between two steps of a running batch) is split among the requests of the
step in proportion to the tokens each had computed in it — a prefill chunk of n prompt tokens
weighs n, a decode step 1 — and added to `Request.replica_seconds`. A step that starts from an
idle engine is billed from its own start. Busy time no step billed (a batch aborted between
steps) stays busy but is counted as `unbilled_s`.

The engine knows nothing of prices, tenants or the gateway: it hands a request's seconds out
with its last delta, and whoever knows the price of a GPU-hour multiplies.

Not thread-safe: `EngineCore` calls every method under its lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from strata.engine.scheduler import ScheduledChunk


class ReplicaTime(NamedTuple):
    """Seconds since the replica started, and how they were spent; busy_s + idle_s == replica_s."""

    replica_s: float
    busy_s: float
    idle_s: float
    unbilled_s: float  # busy seconds no request was billed for

    @property
    def billed_s(self) -> float:
        return self.busy_s - self.unbilled_s


class ReplicaAccountant:
    """Splits the replica's wall time among the requests of each step; the rest is idle."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._start = self._mark = clock()  # `_mark`: where the time not yet assigned begins
        self._idle = 0.0
        self._billed = 0.0
        self._busy = False  # whether the time since `_mark` is busy

    def step_started(self) -> None:
        """A step with work begins: the time an idle engine spent waiting is idle."""
        if not self._busy:
            now = self._clock()
            self._idle += now - self._mark
            self._mark = now
            self._busy = True

    def step_finished(self, chunks: Sequence[ScheduledChunk], still_running: bool) -> None:
        """Bill the time since the last mark to `chunks`' requests by the tokens each computed;
        `still_running`: requests remain in the batch, so the time until the next step is busy."""
        now = self._clock()
        elapsed, self._mark = now - self._mark, now
        tokens = sum(chunk.num_tokens for chunk in chunks)
        if tokens:
            per_token = elapsed / tokens
            for chunk in chunks:
                chunk.request.replica_seconds += chunk.num_tokens * per_token
            self._billed += elapsed
        self._busy = still_running

    def batch_emptied(self) -> None:
        """The last running request left between steps (aborted): time from here on is idle;
        the busy time since the last step stays unbilled."""
        if self._busy:
            self._mark = self._clock()
            self._busy = False

    def snapshot(self) -> ReplicaTime:
        now = self._clock()
        replica = now - self._start
        idle = self._idle if self._busy else self._idle + (now - self._mark)
        busy = replica - idle
        return ReplicaTime(replica, busy, idle, max(0.0, busy - self._billed))
