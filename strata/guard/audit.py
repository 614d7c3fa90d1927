"""Label audit: rows of a labelled set whose text also occurs under the other label.

Public injection datasets are assembled from many sources, and the same prompt, or the same
jailbreak template with a different request pasted in, can appear as an attack in one row and
as benign in another. No threshold can get both rows right, so such rows put a floor under the
error any detector can reach on that set. `conflicts` finds them: two rows share a key when
their normalised, lower-cased, whitespace-collapsed texts agree on the first `KEY_CHARS`
characters (a template's shared opening). The audit reads labels only; it scores nothing, and
training never uses it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from strata.guard.data import Example
from strata.guard.sanitize import normalize

KEY_CHARS = 60


def key(text: str) -> str:
    return " ".join(normalize(text).lower().split())[:KEY_CHARS]


def conflicts(rows: Sequence[Example], reference: Sequence[Example]) -> list[bool]:
    """For each of `rows`: whether its key occurs with both labels among `reference` + `rows`."""
    labels: dict[str, set[int]] = defaultdict(set)
    for e in [*reference, *rows]:
        labels[key(e.text)].add(e.label)
    return [len(labels[key(e.text)]) > 1 for e in rows]
