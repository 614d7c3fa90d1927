"""The prompt-injection classifier: a cheap sparse model, and MiniLM only where it is unsure.

`InjectionModel` is the trained artifact (`artifacts/injection.npz`, built by
`strata guard train`), a two-stage cascade over the detectors' normalised copy of a text:

1. `SparseModel`: logistic regression over hashed char 2-5 and word 1-3 n-gram tf-idf
   (features.py). Under a millisecond per message. A text whose logit is at or below `gate`
   is judged benign here, and its score is this stage's probability.
2. The second stage (heads.py), for texts above the gate only: MiniLM's first four layers
   (encoder.py; ~10-40 ms for a chat message on one core of an AVX2 machine), mean-pooled,
   read by a head together with the first stage's logit. The gate sits low in the attacks'
   first-stage range, so that almost every attack reaches the second stage, whose score then
   decides. MiniLM is an English model, so text mostly in other scripts (Cyrillic, CJK,
   Arabic, Devanagari …) stays with the first stage: there its vectors are out of
   distribution and the head's answer means nothing.

`threshold` (a probability) was chosen on the validation splits. Loading needs numpy only;
the encoder, and torch with it, is built the first time a text passes the gate (or at
`warm_up`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from strata.errors import ModelLoadError
from strata.guard.features import NUM_BUCKETS, featurize
from strata.guard.heads import Encoder, SecondStage, load_head

ARTIFACT = Path(__file__).parent / "artifacts" / "injection.npz"
MIN_WORDS = 2  # fewer words than this: the classifier alone never flags the text
SHORT_TEXT_CAP = 0.5
WINDOW_CHARS = 2_000  # long texts are scored per window; the text's score is the highest
WINDOW_STEP = 1_500
MIN_LATIN_SHARE = 0.5  # MiniLM is an English model: other scripts stay with the first stage

F32 = npt.NDArray[np.float32]


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
class InjectionModel:
    """The cascade: `sparse` for every text, `head` over `encoder` for texts above `gate`."""

    sparse: SparseModel
    head: SecondStage | None
    gate: float  # first-stage logit above which the second stage decides
    threshold: float  # probability at which a text counts as an injection
    meta: dict[str, Any]
    encoder: Encoder | None = field(default=None, compare=False, repr=False)  # None: the head's

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
        embedding = self.second_stage_encoder().encode([normalized])[0]
        return self.head.logit(first, embedding) if self.head.knows(embedding) else first

    def second_stage_encoder(self) -> Encoder:
        """`encoder` if one was given (tests, caches), else the one the head needs."""
        if self.encoder is not None:
            return self.encoder
        if self.head is None:
            raise ModelLoadError("this guard artifact has no second stage")
        return self.head.encoder()

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
            self.second_stage_encoder().encode(["warm-up"])

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
                head = load_head(z)
        except (OSError, KeyError, ValueError) as exc:
            raise ModelLoadError(
                f"guard artifact {path} cannot be read ({exc}); "
                "rebuild it with `strata guard train`"
            ) from exc
        if weights.shape != (NUM_BUCKETS,) or idf.shape != (NUM_BUCKETS,):
            raise ModelLoadError(f"guard artifact {path} has the wrong shape {weights.shape}")
        return cls(SparseModel(weights, idf, bias), head, gate, threshold, meta)


@lru_cache(maxsize=1)
def default_model() -> InjectionModel:
    """The committed artifact, loaded once per process."""
    return InjectionModel.load()
