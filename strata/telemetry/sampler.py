"""The dashboard's history: every `interval_s` a `Point` computed from the collectors, kept in a
bounded ring buffer in memory (oldest dropped first).

One sample reads the registries in-process, exactly what a `/metrics` scrape reads, without
rendering text, and computes a few dozen numbers: cheap enough to run every second. It runs as
an asyncio task on the gateway's event loop, where the scrapes run too, so the collectors are
never read from two threads. History is per process and starts empty at each start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from strata.background import stop
from strata.telemetry.timeseries import PANELS, Collector, Panel, Snapshot, Values

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Point:
    """The panels' values over the interval that ended at `t` (Unix seconds, to the ms, so that
    a client's `since=t` round-trips exactly)."""

    t: float
    panels: dict[str, Values]

    def as_json(self) -> dict[str, Any]:
        return {"t": self.t, **self.panels}


class Sampler:
    """Samples `collectors` into `Point`s; `start()` runs it every `interval_s` until `aclose()`.

    `sample()` may also be called directly (tests do); each point covers the time since the
    previous sample, or since construction for the first.
    """

    def __init__(
        self,
        collectors: Sequence[Collector],
        interval_s: float,
        capacity: int,
        panels: Sequence[Panel] = PANELS,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        assert interval_s > 0 and capacity > 0
        self.interval_s = interval_s
        self._collectors = collectors
        self._panels = panels
        self._clock = clock
        self._monotonic = monotonic
        self._points: deque[Point] = deque(maxlen=capacity)
        self._last = Snapshot.take(collectors)
        self._last_at = monotonic()
        self._task: asyncio.Task[None] | None = None

    def sample(self) -> Point:
        now, snapshot = self._monotonic(), Snapshot.take(self._collectors)
        dt_s = now - self._last_at
        panels = {p.name: p.measure(self._last, snapshot, dt_s) for p in self._panels}
        point = Point(round(self._clock(), 3), panels)
        self._points.append(point)
        self._last, self._last_at = snapshot, now
        return point

    def since(self, t: float | None = None) -> list[Point]:
        """The points after `t` (all kept points when None), oldest first."""
        return [p for p in self._points if t is None or p.t > t]

    def start(self) -> None:
        assert self._task is None, "the sampler is already running"
        self._task = asyncio.create_task(self._run(), name="strata-dashboard-sampler")

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.sample()
            except Exception:  # a failing collector costs one point, not the dashboard
                logger.exception("dashboard sample failed")
