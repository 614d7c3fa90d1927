from __future__ import annotations

import math
import random

import pytest

from strata.telemetry.alerts.histogram import GROWTH, LogHistogram


def _of(values: list[float]) -> LogHistogram:
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    return histogram


def _exact(values: list[float], q: float) -> float:
    """The nearest-rank quantile of the values themselves."""
    return sorted(values)[max(1, math.ceil(q * len(values))) - 1]


@pytest.mark.parametrize("q", [0.01, 0.5, 0.9, 0.99, 1.0])
def test_quantiles_are_within_the_bucket_error(q: float) -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-3, 1.2) for _ in range(5000)]
    found = _of(values).quantile(q)
    assert found is not None
    assert found == pytest.approx(_exact(values, q), rel=GROWTH - 1)


def test_an_empty_histogram_has_no_quantile_and_no_spread() -> None:
    assert LogHistogram().quantile(0.5) is None
    assert LogHistogram().mad(1.0) == 0.0


def test_zero_and_negative_values_count_as_zero() -> None:
    histogram = _of([0.0, 0.0, -1.0, 5.0])
    assert histogram.quantile(0.5) == 0.0
    assert histogram.quantile(1.0) == pytest.approx(5.0, rel=0.01)


def test_mad_is_the_median_absolute_deviation() -> None:
    # deviations from 3: 2, 1, 0, 1, 97 -> median 1; the outlier does not matter
    histogram = _of([1.0, 2.0, 3.0, 4.0, 100.0])
    assert histogram.mad(3.0) == pytest.approx(1.0, rel=0.05)
    assert _of([2.0] * 9).mad(2.0) == pytest.approx(0.0, abs=0.03)


def test_merging_and_taking_away_is_exact() -> None:
    a, b = _of([0.1, 0.2, 0.0, 9.0]), _of([0.2, 3.0])
    a.merge(b)
    assert a.total == 6 and a.zeros == 1
    a.merge(b, -1)
    a.merge(_of([0.1, 0.2, 0.0, 9.0]), -1)
    assert a.total == 0 and a.zeros == 0 and a.counts == {}


def test_taking_away_what_was_never_added_is_a_bug() -> None:
    with pytest.raises(AssertionError):
        _of([1.0]).merge(_of([1.0, 2.0]), -1)
