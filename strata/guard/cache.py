"""Encoder outputs kept on disk, so training and evaluation run MiniLM once per distinct text.

`CachedEncoder` sits in front of an encoder: vectors are keyed by the SHA-256 of the text and
stored in one `.npz` per encoder name under a cache folder (`.strata/cache/guard` by default,
which git ignores). Training and `strata guard eval` use it; serving never does.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from strata.guard.classifier import Encoder

DEFAULT_DIR = Path(".strata/cache/guard")
F32 = npt.NDArray[np.float32]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class CachedEncoder:
    """An `Encoder` that computes only texts it has not seen; `save` writes what it learned.
    The wrapped encoder is built on the first miss (`make`), so a full cache needs no model."""

    def __init__(self, name: str, make: Callable[[], Encoder], folder: Path = DEFAULT_DIR):
        self.path = folder / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}.npz"
        self._make = make
        self._inner: Encoder | None = None
        self._vectors: dict[str, F32] = {}
        self._dirty = False
        if self.path.exists():
            with np.load(self.path, allow_pickle=False) as z:
                self._vectors = dict(zip(z["keys"].tolist(), z["vectors"], strict=True))

    def encode(self, texts: list[str]) -> F32:
        keys = [text_key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True)
                                     if k not in self._vectors))  # fmt: skip
        if missing:
            self._inner = self._inner or self._make()
            for text, vector in zip(missing, self._inner.encode(missing), strict=True):
                self._vectors[text_key(text)] = vector
            self._dirty = True
        return np.stack([self._vectors[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def save(self) -> None:
        if not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._vectors)
        np.savez(self.path, keys=np.array(keys), vectors=np.stack([self._vectors[k] for k in keys]))
        self._dirty = False
