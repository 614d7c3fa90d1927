"""Token-aware, content-defined chunking whose boundaries stay put when text is inserted earlier.

A document is cut into sentences (units); a unit longer than the limit is cut into runs of
words. Units are then grouped by recursive splitting: a group over `max_tokens` is split after
the unit with the smallest content hash (ties: the earliest), and each half is handled the same
way. Which unit a group splits at depends only on the units' own text, never on their offset
from the start, so inserting or editing a sentence changes only the chunk it lands in (and at
most a neighbour when a group has to split anew); every other chunk keeps its exact text and
content hash, so its embedding is reused.

The chunker knows nothing about embeddings, rows or the database; it only counts tokens with
the tokenizer it is given.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

TokenCounter = Callable[[Sequence[str]], list[int]]
# A sentence ends after . ! ? (before whitespace) or at a line break.
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")
_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class Chunk:
    """One piece of a document as indexed: its number in the document, text and hash."""

    number: int
    text: str
    content_hash: bytes  # blake2b-128 of the text (UTF-8)
    tokens: int


class _Unit(NamedTuple):
    start: int  # character offsets into the document
    end: int
    tokens: int
    priority: int  # content hash of the unit's text: where groups split


def content_hash(text: str) -> bytes:
    """The hash that decides whether a chunk's embedding can be reused."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class Chunker:
    """Cuts text into chunks of at most `max_tokens` tokens (a single word longer than that is
    the only exception). Thread-safe if `count_tokens` is."""

    def __init__(self, count_tokens: TokenCounter, max_tokens: int = 128) -> None:
        assert max_tokens >= 1
        self._count = count_tokens
        self.max_tokens = max_tokens

    def chunk(self, text: str) -> list[Chunk]:
        """The chunks of `text`, in document order; empty for blank text."""
        units = self._units(text)
        groups = _split(units, self.max_tokens)
        chunks = []
        for number, (first, last) in enumerate(groups):
            piece = text[units[first].start : units[last].end].strip()
            tokens = sum(u.tokens for u in units[first : last + 1])
            chunks.append(Chunk(number, piece, content_hash(piece), tokens))
        return chunks

    def _units(self, text: str) -> list[_Unit]:
        spans = sentence_spans(text)
        counts = self._count([text[a:b] for a, b in spans])
        units: list[_Unit] = []
        for (start, end), tokens in zip(spans, counts, strict=True):
            if tokens <= self.max_tokens:
                units.append(_unit(text, start, end, tokens))
            else:
                units.extend(self._word_runs(text, start, end))
        return units

    def _word_runs(self, text: str, start: int, end: int) -> list[_Unit]:
        """An over-long sentence as greedy runs of whole words (local to the sentence)."""
        words = [(start + m.start(), start + m.end()) for m in _WORD.finditer(text[start:end])]
        counts = self._count([text[a:b] for a, b in words])
        runs: list[_Unit] = []
        run_start, run_tokens = words[0][0], 0
        for (a, _), tokens in zip(words, counts, strict=True):
            if run_tokens and run_tokens + tokens > self.max_tokens:
                runs.append(_unit(text, run_start, a, run_tokens))
                run_start, run_tokens = a, 0
            run_tokens += tokens
        runs.append(_unit(text, run_start, words[-1][1], run_tokens))
        return runs


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the non-blank sentences of `text`."""
    spans = []
    start = 0
    for match in _SENTENCE_BREAK.finditer(text):
        if text[start : match.start()].strip():
            spans.append((start, match.start()))
        start = match.end()
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return spans


def _unit(text: str, start: int, end: int, tokens: int) -> _Unit:
    digest = hashlib.blake2b(text[start:end].strip().encode("utf-8"), digest_size=8).digest()
    return _Unit(start, end, tokens, int.from_bytes(digest, "big"))


def _split(units: Sequence[_Unit], max_tokens: int) -> list[tuple[int, int]]:
    """Inclusive (first, last) unit ranges, each within `max_tokens` or a single unit."""
    prefix = [0]
    for unit in units:
        prefix.append(prefix[-1] + unit.tokens)
    groups: list[tuple[int, int]] = []
    stack = [(0, len(units) - 1)] if units else []
    while stack:
        first, last = stack.pop()
        if first == last or prefix[last + 1] - prefix[first] <= max_tokens:
            groups.append((first, last))
            continue
        # Split after the lowest-priority unit, never after the last one.
        cut = min(range(first, last), key=lambda i: (units[i].priority, i))
        stack.append((cut + 1, last))
        stack.append((first, cut))
    return groups
