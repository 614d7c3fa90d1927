"""One series of samples in time slices: the recent window and the baseline before it.

    |<---------------- baseline_s ---------------->|<--- window_s --->|
    | coarse slice | coarse slice | ... | coarse    | fine slices ...  | now

A sample goes into the newest fine slice and the running `current` total: O(1), no lock (the
gateway's event loop is the only writer, and the evaluator runs on it too). `roll(now)`, called
by the evaluator, moves fine slices that left the window into the baseline, merged into coarse
slices (a tenth of the baseline each), and drops coarse slices older than the baseline. Every
sample crosses each boundary once, so evaluation costs what changed, not what is kept; memory
is about twenty small histograms per series whatever the traffic. Boundaries are quantized to
a slice: the window is `window_s` give or take a tenth, the baseline give or take a tenth.
"""

from __future__ import annotations

import math
from collections import deque

from strata.telemetry.alerts.histogram import LogHistogram, bucket_of

SLICES_PER_WINDOW = 10
SLICES_PER_BASELINE = 10


class Slices:
    """The samples of one series over the last `window_s + baseline_s` seconds."""

    def __init__(self, window_s: float, baseline_s: float) -> None:
        self._slice_s = window_s / SLICES_PER_WINDOW
        fine_per_baseline = max(1, math.ceil(baseline_s / self._slice_s))
        self._per_coarse = max(1, math.ceil(fine_per_baseline / SLICES_PER_BASELINE))
        self._horizon = SLICES_PER_WINDOW + fine_per_baseline  # in fine slices
        self._recent: deque[tuple[int, LogHistogram]] = deque()  # fine, oldest first
        self._older: deque[tuple[int, LogHistogram]] = deque()  # coarse, oldest first
        self.current = LogHistogram()  # everything in `_recent`
        self.baseline = LogHistogram()  # everything in `_older`

    def add(self, value: float, now: float) -> None:
        number = int(now // self._slice_s)
        recent = self._recent
        if not recent or recent[-1][0] < number:
            recent.append((number, LogHistogram()))
        bucket = bucket_of(value)
        recent[-1][1].add_bucket(bucket)  # a clock stepping back lands in the newest slice
        self.current.add_bucket(bucket)

    def roll(self, now: float) -> None:
        """Move what left the window into the baseline; drop what left the baseline."""
        number = int(now // self._slice_s)
        while self._recent and self._recent[0][0] <= number - SLICES_PER_WINDOW:
            fine_number, histogram = self._recent.popleft()
            self.current.merge(histogram, -1)
            self._to_baseline(fine_number // self._per_coarse, histogram)
        oldest = number - self._horizon  # fine slices at or before it are gone
        while self._older and (self._older[0][0] + 1) * self._per_coarse - 1 <= oldest:
            self.baseline.merge(self._older.popleft()[1], -1)

    def baseline_parts(self) -> list[LogHistogram]:
        """The baseline's coarse slices, oldest first (for statistics robust to one bad part)."""
        return [histogram for _, histogram in self._older]

    @property
    def empty(self) -> bool:
        return not self._recent and not self._older

    def _to_baseline(self, coarse_number: int, histogram: LogHistogram) -> None:
        if not self._older or self._older[-1][0] < coarse_number:
            self._older.append((coarse_number, LogHistogram()))
        self._older[-1][1].merge(histogram)
        self.baseline.merge(histogram)
