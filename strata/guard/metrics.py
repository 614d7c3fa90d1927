"""Binary-classification metrics with 95% confidence intervals (Wilson and bootstrap)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

Z95 = 1.959964
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


class Interval(NamedTuple):
    value: float
    low: float
    high: float


def wilson(successes: int, trials: int) -> Interval:
    """A proportion with its 95% Wilson score interval (NaN when there are no trials)."""
    if trials == 0:
        return Interval(math.nan, math.nan, math.nan)
    p = successes / trials
    denom = 1 + Z95**2 / trials
    centre = (p + Z95**2 / (2 * trials)) / denom
    half = Z95 * math.sqrt(p * (1 - p) / trials + Z95**2 / (4 * trials**2)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def roc_auc(scores: Floats, labels: Ints) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    combined = np.concatenate([pos, neg])
    for value in np.unique(combined):  # average ranks of ties
        tied = combined == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def f1(scores: Floats, labels: Ints, threshold: float) -> float:
    predicted = scores > threshold
    tp = int((predicted & (labels == 1)).sum())
    fp = int((predicted & (labels == 0)).sum())
    fn = int((~predicted & (labels == 1)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def bootstrap(
    metric: Callable[[Floats, Ints], float], scores: Floats, labels: Ints, rounds: int = 300
) -> Interval:
    """`metric` with a 95% percentile-bootstrap interval (fixed seed, reproducible)."""
    rng = np.random.default_rng(0)
    values = []
    for _ in range(rounds):
        index = rng.integers(0, len(scores), len(scores))
        values.append(metric(scores[index], labels[index]))
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return Interval(metric(scores, labels), float(low), float(high))


def recall_at_fpr(scores: Floats, labels: Ints, max_fpr: float) -> float:
    """Recall at the best threshold whose false-positive rate is ≤ `max_fpr` (on this set)."""
    negatives = np.sort(scores[labels == 0])
    allowed = int(np.floor(len(negatives) * max_fpr))
    threshold = negatives[len(negatives) - allowed - 1]
    return float((scores[labels == 1] > threshold).mean())


def at_threshold(scores: Floats, labels: Ints, threshold: float) -> dict[str, Interval | float]:
    """Recall, false-positive rate and precision (Wilson intervals), F1 (bootstrap)."""
    predicted = scores > threshold
    tp = int((predicted & (labels == 1)).sum())
    fp = int((predicted & (labels == 0)).sum())
    return {
        "recall": wilson(tp, int((labels == 1).sum())),
        "fpr": wilson(fp, int((labels == 0).sum())),
        "precision": wilson(tp, tp + fp),
        "f1": bootstrap(lambda s, y: f1(s, y, threshold), scores, labels),
    }
