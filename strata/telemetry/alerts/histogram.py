"""A sparse histogram on log-spaced buckets: O(1) to add to, exact to merge and subtract, and
precise to a fixed relative error, so a window of a million samples costs a few hundred
counters.

Bucket `i` holds values in [GROWTH**i, GROWTH**(i+1)) and reports its geometric middle, within
1% of any value in it. Zero and negative values (a free request) share one bucket reported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

GROWTH = 1.02
_INV_LOG_GROWTH = 1 / math.log(GROWTH)
MAD_TO_SIGMA = 1.4826  # MAD x this estimates a normal distribution's standard deviation


class LogHistogram:
    """Counts of samples by log bucket; `quantile` and `mad` read it back."""

    __slots__ = ("counts", "total", "zeros")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.zeros = 0
        self.total = 0

    def add(self, value: float) -> None:
        self.add_bucket(bucket_of(value))

    def add_bucket(self, bucket: int | None) -> None:
        """Count one sample already placed by `bucket_of` (the hot path places it once)."""
        self.total += 1
        if bucket is None:
            self.zeros += 1
        else:
            self.counts[bucket] = self.counts.get(bucket, 0) + 1

    def merge(self, other: LogHistogram, sign: int = 1) -> None:
        """Add `other`'s counts (sign 1) or take them away (sign -1: it was added before)."""
        self.total += sign * other.total
        self.zeros += sign * other.zeros
        for index, count in other.counts.items():
            left = self.counts.get(index, 0) + sign * count
            if left:
                self.counts[index] = left
            else:
                del self.counts[index]
        assert self.total >= 0 and self.zeros >= 0, "took away counts that were never added"

    def quantile(self, q: float) -> float | None:
        """The nearest-rank `q`-quantile (0 < q <= 1); None when empty."""
        return _nearest_rank(self._values(), self.total, q)

    def mad(self, center: float) -> float:
        """The median absolute deviation from `center`; 0.0 when empty."""
        deviations = sorted((abs(value - center), count) for value, count in self._values())
        found = _nearest_rank(deviations, self.total, 0.5)
        return 0.0 if found is None else found

    def _values(self) -> list[tuple[float, int]]:
        """(representative value, count) per non-empty bucket, smallest first."""
        values = [(_middle(i), self.counts[i]) for i in sorted(self.counts)]
        return [(0.0, self.zeros), *values] if self.zeros else values


def bucket_of(value: float) -> int | None:
    """The bucket holding `value`; None for zero and below."""
    return math.floor(math.log(value) * _INV_LOG_GROWTH) if value > 0.0 else None


def _middle(index: int) -> float:
    return float(GROWTH ** (index + 0.5))


def _nearest_rank(sorted_values: Iterable[tuple[float, int]], total: int, q: float) -> float | None:
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for value, count in sorted_values:
        seen += count
        if seen >= rank:
            return value
    raise AssertionError("counts add up to less than the total")
