"""The cascade's second stage: what reads MiniLM's pooled vector of a text the first stage
could not clear, together with that stage's logit.

Two kinds, one interface (`knows`, `logit`, `encoder`, `arrays`):

- `DenseHead` (the shipped default): MiniLM's first four layers as published, and a small MLP
  over their mean-pooled states and the first-stage logit. It answers only for vectors within
  the spread of its training texts' (`knows`); other text is left to the first stage.
- `TunedHead` (`strata guard train --second-stage tuned`): the four layers fine-tuned on the
  train splits (finetune.py, stored as float16), read out linearly, plus a weighted first-stage
  logit. Measured in docs/benchmarks/guard-tuned/guard.md against guard.md: it ranks S-Labs
  better, but at the one threshold both validation splits allow it trades S-Labs and
  multilingual recall for neuralchemy's false-positive rate, and it makes the artifact ~15 MB,
  so it is an option rather than the default.

The encoder each head needs is built on first use and shared per process.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

LOGIT_SCALE = 4.0  # the first-stage logit enters the MLP divided by this (unit-ish range)
FEATURE_CLIP = 4.0  # standardised MiniLM features are clipped: unusual text cannot run away
TUNED_PREFIX = "tuned."  # artifact keys of the fine-tuned layer weights

F32 = npt.NDArray[np.float32]


class Encoder(Protocol):
    """Texts in, one fixed-size vector each (`SentenceEncoder`, or a cache in front of it)."""

    def encode(self, texts: list[str]) -> F32: ...


@lru_cache(maxsize=1)
def minilm_encoder() -> Encoder:
    """The bundled MiniLM's first four layers as published, built once per process."""
    from strata.guard.encoder import SentenceEncoder

    return SentenceEncoder()


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

    def encoder(self) -> Encoder:
        return minilm_encoder()

    def arrays(self) -> dict[str, Any]:
        return {
            "head_mean": self.mean, "head_scale": self.scale, "head_w1": self.w1,
            "head_b1": self.b1, "head_w2": self.w2,
            "head_scalars": np.array([self.b2, self.skip, self.max_rms], dtype=np.float64),
        }  # fmt: skip


@dataclass(frozen=True, eq=False)
class TunedHead:
    """MiniLM's first layers as fine-tuned (`layers`), mean-pooled and read out linearly, plus
    the first stage's logit: `readout·pooled + bias + first_weight·first`. Equality and hashing
    are by identity, so a head can key the cache of the encoder built from its layers."""

    layers: dict[str, F32]
    readout: F32  # (DIMS,)
    bias: float
    first_weight: float  # chosen on the validation splits

    def knows(self, embedding: F32) -> bool:
        """Always: the layers were trained on the texts, so no vector is foreign to them."""
        return True

    def logit(self, sparse_logit: float, embedding: F32) -> float:
        return float(embedding @ self.readout) + self.bias + self.first_weight * sparse_logit

    def encoder(self) -> Encoder:
        return tuned_encoder(self)

    def arrays(self) -> dict[str, Any]:
        return {
            **{TUNED_PREFIX + k: v.astype(np.float16) for k, v in self.layers.items()},
            "readout": self.readout,
            "tuned_scalars": np.array([self.bias, self.first_weight], dtype=np.float64),
        }


@lru_cache(maxsize=2)
def tuned_encoder(head: TunedHead) -> Encoder:
    """The encoder carrying `head`'s fine-tuned layers, built once per head on first use."""
    from strata.guard.encoder import SentenceEncoder

    return SentenceEncoder(layers=head.layers)


SecondStage = DenseHead | TunedHead


def load_head(z: Any) -> SecondStage | None:
    """The second stage stored in an opened artifact, if it has one."""

    def f32(name: str) -> F32:
        return np.asarray(z[name], dtype=np.float32)

    if "readout" in z.files:
        layers = {n[len(TUNED_PREFIX) :]: f32(n) for n in z.files if n.startswith(TUNED_PREFIX)}
        bias, first_weight = (float(v) for v in z["tuned_scalars"])
        return TunedHead(layers, f32("readout"), bias, first_weight)
    if "head_w1" in z.files:
        b2, skip, max_rms = (float(v) for v in z["head_scalars"])
        return DenseHead(f32("head_mean"), f32("head_scale"), f32("head_w1"), f32("head_b1"),
                         f32("head_w2"), b2, skip, max_rms)  # fmt: skip
    return None
