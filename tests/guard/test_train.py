from __future__ import annotations

import numpy as np

from strata.guard.train import TrainConfig, fit_head, recall_at, threshold_at_fpr


def test_threshold_keeps_the_false_positive_rate_within_the_limit() -> None:
    negatives = np.arange(200, dtype=np.float64)  # 0..199
    scores = np.concatenate([negatives, [150.5, 198.5, 300.0]])
    labels = np.array([0] * 200 + [1] * 3)
    threshold = threshold_at_fpr(scores, labels, 0.01)  # two negatives may pass
    assert threshold == 197.0 and (negatives > threshold).sum() == 2
    assert recall_at(scores, labels) == 2 / 3


def test_head_training_is_seeded_and_learns() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(400) > 0.5).astype(np.float32)
    embeddings = rng.normal(size=(400, 8)).astype(np.float32)
    embeddings[:, 0] += 2 * labels  # one informative direction
    first = np.zeros(400, dtype=np.float32)
    config = TrainConfig(head_hidden=8, head_epochs=100)
    heads = [fit_head(first, embeddings, labels, np.ones(400, np.float32), config) for _ in "ab"]
    assert np.array_equal(heads[0].w1, heads[1].w1) and heads[0].b2 == heads[1].b2
    scores = np.array([heads[0].logit(0.0, e) for e in embeddings])
    assert scores[labels == 1].mean() > scores[labels == 0].mean() + 0.5
    assert heads[0].knows(embeddings.mean(0)) and 0.0 < heads[0].max_rms < 10.0
