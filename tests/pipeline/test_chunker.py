from __future__ import annotations

import random

from strata.pipeline.chunker import Chunker, sentence_spans
from strata.pipeline.embedder import count_tokens

WORDS = [
    "the",
    "ticket",
    "customer",
    "billing",
    "refund",
    "login",
    "error",
    "page",
    "account",
    "password",
    "reset",
    "invoice",
    "payment",
    "failed",
    "agent",
    "browser",
    "cache",
    "timeout",
    "export",
    "report",
    "dashboard",
]


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 22))).capitalize() + "."


def test_chunks_respect_the_token_limit_and_cover_the_text(chunker: Chunker) -> None:
    rng = random.Random(0)
    text = " ".join(_sentence(rng) for _ in range(120))
    chunks = chunker.chunk(text)
    assert all(c.tokens <= 128 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == text.split()
    assert [c.number for c in chunks] == list(range(len(chunks)))
    assert chunker.chunk("   \n ") == []


def test_a_sentence_longer_than_the_limit_is_cut_into_word_runs() -> None:
    chunker = Chunker(count_tokens, max_tokens=16)
    chunks = chunker.chunk("word " * 100)
    assert len(chunks) >= 6 and all(c.tokens <= 16 for c in chunks)


def test_inserting_a_sentence_re_embeds_at_most_two_chunks_of_twenty(chunker: Chunker) -> None:
    rng = random.Random(1)
    sentences = [_sentence(rng) for _ in range(80)]
    before = chunker.chunk(" ".join(sentences))
    assert len(before) >= 20
    old = {c.content_hash for c in before}
    changed = []
    for position in range(0, len(sentences) + 1, 3):
        edited = [*sentences[:position], _sentence(rng), *sentences[position:]]
        after = chunker.chunk(" ".join(edited))
        changed.append(sum(c.content_hash not in old for c in after))
    # Content-defined split points: an insertion changes its own chunk, and a neighbour when
    # a group has to split anew; never a shift through the rest of the document.
    assert max(changed) <= 2, changed


def test_sentence_spans_skip_blank_pieces() -> None:
    text = "One. Two!\n\nThree?  Four"
    assert [text[a:b] for a, b in sentence_spans(text)] == ["One.", "Two!", "Three?", "Four"]
