"""The prompt-injection classifier: a cheap sparse model, and MiniLM only where it is unsure.

`InjectionModel` is the trained artifact (`artifacts/injection.npz`, built by
`strata guard train`), a two-stage cascade over the detectors' normalised copy of a text:

1. `SparseModel`: logistic regression over hashed char 2-5 and word 1-3 n-gram tf-idf
   (features.py). Under a millisecond per message. A text whose logit is at or below `gate`
   is judged benign here, and its score is this stage's probability.
2. `DenseHead`: for texts above the gate only, a small MLP over the first stage's logit and
   the mean-pooled MiniLM states (encoder.py, ~5-10 ms for a chat message on one core).
   The gate sits low in the attacks' first-stage range, so that almost every attack reaches
   the second stage; its score decides, unless the MiniLM vector lies outside the spread of
   the training texts' vectors (then the first stage's does). MiniLM is an English model, so
   text mostly in other scripts (Cyrillic, CJK, Arabic, Devanagari …) stays with the first
   stage too: there its vectors are out of distribution and the head's answer means nothing.

`threshold` (a probability) was chosen on the validation splits. Loading needs numpy only;
the encoder, and torch with it, is built the first time a text passes the gate.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from strata.errors import ModelLoadError
from strata.guard.features import NUM_BUCKETS, featurize

ARTIFACT = Path(__file__).parent / "artifacts" / "injection.npz"
MIN_WORDS = 2  # fewer words than this: the classifier alone never flags the text
SHORT_TEXT_CAP = 0.5
WINDOW_CHARS = 2_000  # long texts are scored per window; the text's score is the highest
WINDOW_STEP = 1_500
LOGIT_SCALE = 4.0  # the first-stage logit enters the head divided by this (unit-ish range)
FEATURE_CLIP = 4.0  # standardised MiniLM features are clipped: unusual text cannot run away
MIN_LATIN_SHARE = 0.5  # MiniLM is an English model: other scripts stay with the first stage

F32 = npt.NDArray[np.float32]


class Encoder(Protocol):
    """Texts in, one fixed-size vector each (`SentenceEncoder`, or a cache in front of it)."""

    def encode(self, texts: list[str]) -> F32: ...


def windows(text: str) -> list[str]:
    """Overlapping windows covering a long text (the text itself when short)."""
    if len(text) <= WINDOW_CHARS:
        return [text]
    return [text[i : i + WINDOW_CHARS] for i in range(0, len(text) - WINDOW_STEP, WINDOW_STEP)]


def latin_share(text: str) -> float:
    """The share of letters in `text` that are Latin (1.0 for a text without letters)."""
    letters = [c for c in text if c.isalpha()]
    return sum(c < "\u0250" for c in letters) / len(letters) if letters else 1.0


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


@lru_cache(maxsize=1)
def default_encoder() -> Encoder:
    """The bundled MiniLM encoder, built once per process on first use."""
    from strata.guard.encoder import SentenceEncoder

    return SentenceEncoder()


@dataclass(frozen=True)
class SparseModel:
    """Logistic regression over L2-normalised sublinear tf-idf of hashed n-grams."""

    weights: F32  # (NUM_BUCKETS,)
    idf: F32  # (NUM_BUCKETS,)
    bias: float

    def logit(self, normalized: str) -> float:
        feats = featurize(normalized.lower(), self.idf)
        return float(np.dot(self.weights[feats.buckets], feats.values)) + self.bias


@dataclass(frozen=True)
class DenseHead:
    """relu(W1·x + b1)·w2 + b2 + skip·x[0], x = [logit / LOGIT_SCALE, clip((e - mean) / scale)]."""

    mean: F32  # (D,)
    scale: F32  # (D,)
    w1: F32  # (H, D + 1)
    b1: F32  # (H,)
    w2: F32  # (H,)
    b2: float
    skip: float
    max_rms: float  # the head answers only for vectors like its training texts' (99%)

    def knows(self, embedding: F32) -> bool:
        """Whether `embedding` lies within the training texts' spread (root-mean-square of its
        standardised features); digits-only or unusual text falls outside and is left to the
        first stage, whose n-grams are not thrown by it."""
        z = (embedding - self.mean) / self.scale
        return float(np.sqrt(np.mean(z * z))) <= self.max_rms

    def logit(self, sparse_logit: float, embedding: F32) -> float:
        z = np.clip((embedding - self.mean) / self.scale, -FEATURE_CLIP, FEATURE_CLIP)
        x = np.concatenate([[sparse_logit / LOGIT_SCALE], z])
        hidden = np.maximum(self.w1 @ x.astype(np.float32) + self.b1, 0.0)  # (H,)
        return float(hidden @ self.w2) + self.b2 + self.skip * float(x[0])

    def arrays(self) -> dict[str, Any]:
        return {
            "head_mean": self.mean, "head_scale": self.scale, "head_w1": self.w1,
            "head_b1": self.b1, "head_w2": self.w2,
            "head_scalars": np.array([self.b2, self.skip, self.max_rms], dtype=np.float64),
        }  # fmt: skip


@dataclass(frozen=True)
class InjectionModel:
    """The cascade: `sparse` for every text, `head` over `encoder` for texts above `gate`."""

    sparse: SparseModel
    head: DenseHead | None
    gate: float  # first-stage logit above which the second stage decides
    threshold: float  # probability at which a text counts as an injection
    meta: dict[str, Any]
    encoder: Encoder | None = field(default=None, compare=False, repr=False)  # None: MiniLM

    def first_stage(self, normalized: str) -> float:
        """The sparse model's logit for one window (lower-casing happens here)."""
        return self.sparse.logit(normalized)

    def passes_gate(self, normalized: str) -> bool:
        """Whether any window of `normalized` goes to the second stage."""
        return any(self._second(w, self.first_stage(w)) for w in windows(normalized))

    def _second(self, window: str, first: float) -> bool:
        return (
            self.head is not None and first > self.gate and latin_share(window) >= MIN_LATIN_SHARE
        )

    def logit(self, normalized: str) -> float:
        """The cascade's raw score of one window."""
        first = self.first_stage(normalized)
        if self.head is None or not self._second(normalized, first):
            return first
        embedding = (self.encoder or default_encoder()).encode([normalized])[0]
        return self.head.logit(first, embedding) if self.head.knows(embedding) else first

    def score(self, normalized: str) -> float:
        """Probability that `normalized` is a prompt injection or jailbreak (max over windows).
        A text of fewer than `MIN_WORDS` words carries no instruction to override anything
        ("hi", "thanks"), and the n-gram model, which never saw such texts, is least reliable on
        them: its score is capped at `SHORT_TEXT_CAP`, below any threshold. Known attack shapes
        are matched separately (`heuristics`) and still count."""
        score = sigmoid(max(self.logit(w) for w in windows(normalized)))
        if len(normalized.split()) < MIN_WORDS:
            return min(score, SHORT_TEXT_CAP)
        return score

    def warm_up(self) -> None:
        """Build the second stage's encoder now (1-2 s: torch and MiniLM's weights), so the
        first text that passes the gate does not pay for it."""
        if self.head is not None:
            (self.encoder or default_encoder()).encode(["warm-up"])

    def save(self, path: Path) -> None:
        """Write the compact artifact: float16 sparse weights and idf, compressed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "weights": self.sparse.weights.astype(np.float16),
            "idf": self.sparse.idf.astype(np.float16),
            "scalars": np.array([self.sparse.bias, self.threshold, self.gate], dtype=np.float64),
            "meta": np.array(json.dumps(self.meta, sort_keys=True)),
        }
        if self.head is not None:
            arrays |= self.head.arrays()
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path = ARTIFACT) -> InjectionModel:
        """Read an artifact; `ModelLoadError` naming the file if it is missing or malformed."""
        try:
            with np.load(path, allow_pickle=False) as z:
                weights, idf = z["weights"].astype(np.float32), z["idf"].astype(np.float32)
                bias, threshold, gate = (float(v) for v in z["scalars"])
                meta = json.loads(str(z["meta"]))
                head = _load_head(z) if "head_w1" in z.files else None
        except (OSError, KeyError, ValueError) as exc:
            raise ModelLoadError(
                f"guard artifact {path} cannot be read ({exc}); "
                "rebuild it with `strata guard train`"
            ) from exc
        if weights.shape != (NUM_BUCKETS,) or idf.shape != (NUM_BUCKETS,):
            raise ModelLoadError(f"guard artifact {path} has the wrong shape {weights.shape}")
        return cls(SparseModel(weights, idf, bias), head, gate, threshold, meta)


def _load_head(z: Any) -> DenseHead:
    def f32(name: str) -> F32:
        return np.asarray(z[name], dtype=np.float32)

    b2, skip, max_rms = (float(v) for v in z["head_scalars"])
    return DenseHead(
        f32("head_mean"),
        f32("head_scale"),
        f32("head_w1"),
        f32("head_b1"),
        f32("head_w2"),
        b2,
        skip,
        max_rms,
    )


@lru_cache(maxsize=1)
def default_model() -> InjectionModel:
    """The committed artifact, loaded once per process."""
    return InjectionModel.load()
