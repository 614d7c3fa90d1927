"""The prompt-injection classifier: hashed n-gram tf-idf features, a wide-and-deep head.

`InjectionModel` is the trained artifact (`artifacts/injection.npz`, built by
`strata guard train`): per-bucket idf; a *wide* part (one weight per bucket: logistic
regression); a *deep* part (a 16-dimensional embedding per folded bucket, summed with the
tf-idf weights, then a small ReLU MLP), which lets word combinations interact; a bias; and the
decision threshold chosen on the validation splits. It reads only the detectors' normalised
copy of a text and returns a probability. Loading needs numpy only — never the training data.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from strata.errors import ModelLoadError
from strata.guard.features import NUM_BUCKETS, featurize

ARTIFACT = Path(__file__).parent / "artifacts" / "injection.npz"
WINDOW_CHARS = 2_000  # long texts are scored per window; the text's score is the highest
WINDOW_STEP = 1_500


def windows(text: str) -> list[str]:
    """Overlapping windows covering a long text (the text itself when short)."""
    if len(text) <= WINDOW_CHARS:
        return [text]
    return [text[i : i + WINDOW_CHARS] for i in range(0, len(text) - WINDOW_STEP, WINDOW_STEP)]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


@dataclass(frozen=True)
class DeepHead:
    """Folded-bucket embeddings and a two-layer ReLU MLP: relu(E·x) → relu(W1·h + b1) → w2·h."""

    embeddings: npt.NDArray[np.float32]  # (DEEP_BUCKETS, H)
    w1: npt.NDArray[np.float32]  # (H, H), torch Linear layout (out, in)
    b1: npt.NDArray[np.float32]  # (H,)
    w2: npt.NDArray[np.float32]  # (H,)
    b2: float

    def logit(self, buckets: npt.NDArray[np.int64], values: npt.NDArray[np.float32]) -> float:
        folded = buckets % len(self.embeddings)
        hidden = np.maximum(values @ self.embeddings[folded], 0.0)  # (H,)
        hidden = np.maximum(self.w1 @ hidden + self.b1, 0.0)
        return float(self.w2 @ hidden) + self.b2


@dataclass(frozen=True)
class InjectionModel:
    """A wide (linear) plus deep (embedding + MLP) model over hashed n-gram tf-idf features."""

    weights: npt.NDArray[np.float32]  # (NUM_BUCKETS,) the wide part
    idf: npt.NDArray[np.float32]  # (NUM_BUCKETS,)
    bias: float
    threshold: float  # probability at which a text counts as an injection
    meta: dict[str, Any]
    deep: DeepHead | None = None

    def logit(self, normalized: str) -> float:
        """The raw score of one window of normalised text (lower-cased here)."""
        feats = featurize(normalized.lower(), self.idf)
        wide = float(np.dot(self.weights[feats.buckets], feats.values)) + self.bias
        if self.deep is None:
            return wide
        return wide + self.deep.logit(feats.buckets, feats.values)

    def score(self, normalized: str) -> float:
        """Probability that `normalized` is a prompt injection or jailbreak (max over windows)."""
        return sigmoid(max(self.logit(w) for w in windows(normalized)))

    def save(self, path: Path) -> None:
        """Write the compact artifact: float16 weights and idf, compressed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "weights": self.weights.astype(np.float16),
            "idf": self.idf.astype(np.float16),
            "scalars": np.array([self.bias, self.threshold], dtype=np.float64),
            "meta": np.array(json.dumps(self.meta, sort_keys=True)),
        }
        if self.deep is not None:
            arrays |= {
                "deep_embeddings": self.deep.embeddings.astype(np.float16),
                "deep_w1": self.deep.w1,
                "deep_b1": self.deep.b1,
                "deep_w2": self.deep.w2,
                "deep_b2": np.array([self.deep.b2]),
            }
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path = ARTIFACT) -> InjectionModel:
        """Read an artifact; `ModelLoadError` naming the file if it is missing or malformed."""
        try:
            with np.load(path, allow_pickle=False) as z:
                weights, idf = z["weights"].astype(np.float32), z["idf"].astype(np.float32)
                bias, threshold = (float(v) for v in z["scalars"])
                meta = json.loads(str(z["meta"]))
                deep = _load_deep(z) if "deep_embeddings" in z.files else None
        except (OSError, KeyError, ValueError) as exc:
            raise ModelLoadError(
                f"guard artifact {path} cannot be read ({exc}); "
                "rebuild it with `strata guard train`"
            ) from exc
        if weights.shape != (NUM_BUCKETS,) or idf.shape != (NUM_BUCKETS,):
            raise ModelLoadError(f"guard artifact {path} has the wrong shape {weights.shape}")
        return cls(weights, idf, bias, threshold, meta, deep)


def _load_deep(z: Any) -> DeepHead:
    f32 = np.float32
    return DeepHead(
        z["deep_embeddings"].astype(f32),
        z["deep_w1"].astype(f32),
        z["deep_b1"].astype(f32),
        z["deep_w2"].astype(f32),
        float(z["deep_b2"][0]),
    )


@lru_cache(maxsize=1)
def default_model() -> InjectionModel:
    """The committed artifact, loaded once per process."""
    return InjectionModel.load()
