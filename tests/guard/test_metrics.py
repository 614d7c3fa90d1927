from __future__ import annotations

import numpy as np
import pytest

from strata.guard.metrics import at_threshold, recall_at_fpr, roc_auc, wilson


def test_wilson_interval() -> None:
    value, low, high = wilson(95, 100)
    assert (
        value == 0.95
        and low == pytest.approx(0.8882, abs=1e-4)
        and high == pytest.approx(0.9785, abs=1e-4)
    )
    assert wilson(0, 10).low == 0.0


def test_roc_auc_and_recall_at_fpr() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.8, 0.9])
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    assert roc_auc(scores, labels) == pytest.approx(11 / 12)
    assert recall_at_fpr(scores, labels, 0.0) == 2 / 3


def test_at_threshold() -> None:
    scores = np.array([0.1, 0.6, 0.7, 0.2])
    labels = np.array([0, 0, 1, 1])
    result = at_threshold(scores, labels, 0.5)
    assert result["recall"][0] == 0.5 and result["fpr"][0] == 0.5 and result["precision"][0] == 0.5
