"""Hashed character and word n-gram features, shared by training and scoring.

A text becomes a sparse vector of `NUM_BUCKETS` hashed counts: character n-grams (2 to 5) and
word n-grams (1 to 3), each n with its own hash seed. Hashing is vectorised with numpy over
the text's code points, so a 2,000-character message costs well under a millisecond, and it is
deterministic across processes (no use of Python's salted `hash`). The featurizer knows nothing
about labels or weights: `SparseFeatures` is the (bucket, value) list a linear model consumes.
"""

from __future__ import annotations

import re
import zlib
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

NUM_BUCKETS = 1 << 20
CHAR_NGRAMS = (2, 3, 4, 5)
WORD_NGRAMS = (1, 2, 3)
MAX_FEATURE_CHARS = 8_000  # longer texts are scored in windows of this size (see classifier)
_MULT = np.uint64(0x100000001B3)  # FNV-1a 64-bit prime
_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)

U64 = npt.NDArray[np.uint64]


class SparseFeatures(NamedTuple):
    """One text's features: distinct buckets and their (L2-normalised) tf-idf values."""

    buckets: npt.NDArray[np.int64]  # (K,)
    values: npt.NDArray[np.float32]  # (K,)


def _mix(h: U64, seed: int) -> U64:
    """A cheap 64-bit finaliser (splitmix-style) so that nearby n-grams spread over buckets."""
    h = h ^ np.uint64(seed)
    h = (h ^ (h >> np.uint64(31))) * np.uint64(0x7FB5D329728EA185)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x81DADEF4BC2DD44D)
    return h ^ (h >> np.uint64(33))


def _ngram_hashes(units: U64, sizes: tuple[int, ...], seed: int) -> list[U64]:
    """Hash every contiguous n-gram of `units` for each n in `sizes` (polynomial rolling hash)."""
    out = []
    with np.errstate(over="ignore"):
        for n in sizes:
            if len(units) < n:
                continue
            h = units[: len(units) - n + 1].copy()
            for k in range(1, n):
                h = h * _MULT + units[k : len(units) - n + 1 + k]
            out.append(_mix(h, seed + 7919 * n))
    return out


def _char_units(text: str) -> U64:
    # Spaces pad the text so that word starts and ends form their own n-grams.
    padded = " " + " ".join(text.split()) + " "
    return np.frombuffer(padded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def _word_units(text: str) -> U64:
    words = _WORD.findall(text)
    return np.fromiter((zlib.crc32(w.encode()) for w in words), dtype=np.uint64, count=len(words))


def bucket_counts(text: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Raw hashed counts of a (normalised, lower-cased) text: (distinct buckets, counts)."""
    text = text[:MAX_FEATURE_CHARS]
    hashes = _ngram_hashes(_char_units(text), CHAR_NGRAMS, seed=1)
    hashes += _ngram_hashes(_word_units(text), WORD_NGRAMS, seed=2)
    if not hashes:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    with np.errstate(over="ignore"):
        buckets = (np.concatenate(hashes) % np.uint64(NUM_BUCKETS)).astype(np.int64)
    distinct, counts = np.unique(buckets, return_counts=True)
    return distinct, counts.astype(np.float32)


def featurize(text: str, idf: npt.NDArray[np.float32]) -> SparseFeatures:
    """Sublinear tf × idf, L2-normalised: the vector the linear model scores."""
    buckets, counts = bucket_counts(text)
    values = (1.0 + np.log(counts)) * idf[buckets]
    norm = float(np.linalg.norm(values))
    if norm > 0.0:
        values = values / norm
    return SparseFeatures(buckets, values.astype(np.float32))
