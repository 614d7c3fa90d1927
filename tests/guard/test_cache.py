from __future__ import annotations

from pathlib import Path

import numpy as np

from strata.guard.cache import CachedEncoder


class LengthEncoder:
    calls: list[list[str]]

    def __init__(self) -> None:
        self.calls = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_encodes_only_unseen_texts_and_keeps_them_on_disk(tmp_path: Path) -> None:
    inner = LengthEncoder()
    cache = CachedEncoder("fake/encoder:1", lambda: inner, tmp_path)
    first = cache.encode(["a", "bb", "a"])
    assert first.tolist() == [[1, 1], [2, 1], [1, 1]] and inner.calls == [["a", "bb"]]
    cache.encode(["bb", "ccc"])
    assert inner.calls[-1] == ["ccc"]
    cache.save()
    assert cache.path.parent == tmp_path and cache.path.exists()

    fresh = LengthEncoder()
    again = CachedEncoder("fake/encoder:1", lambda: fresh, tmp_path)
    assert again.encode(["ccc", "a"]).tolist() == [[3, 1], [1, 1]] and fresh.calls == []
