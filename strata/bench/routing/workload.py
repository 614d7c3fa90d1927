"""The shared-prefix workload: conversations over a few long contexts, arriving at random.

`contexts` system prompts (a support bot's instructions plus RAG context) of about
`context_words` words; `conversations` conversations, each on one context (drawn uniformly),
each `turns` user turns long; conversations start as a Poisson process of `rate` per second,
and a user thinks an exponential `think_s` seconds between a reply and the next turn. All of
it depends on `seed` alone; `salt` starts every context, so two runs with different salts send
the same shapes with nothing in common for a prefix cache.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from strata.bench.words import WORDS


@dataclass(frozen=True)
class Shape:
    contexts: int = 8
    context_words: int = 400
    conversations: int = 48
    turns: int = 3
    rate: float = 0.5  # conversations started per second
    think_s: float = 1.0  # mean pause between a reply and the next turn
    question_words: int = 24
    max_tokens: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("contexts", "context_words", "conversations", "turns", "max_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
        if self.rate <= 0 or self.think_s < 0 or self.question_words < 1:
            raise ValueError("--rate must be > 0, --think-s >= 0, --question-words >= 1")


@dataclass(frozen=True)
class Conversation:
    context: int  # which system prompt
    start_s: float  # when its first turn is sent, from the run's start
    questions: tuple[str, ...]  # the user's turns
    pauses_s: tuple[float, ...]  # thinking before turns 2.. (one fewer than questions)


@dataclass(frozen=True)
class Workload:
    shape: Shape
    contexts: tuple[str, ...]
    conversations: tuple[Conversation, ...]

    @property
    def requests(self) -> int:
        return sum(len(c.questions) for c in self.conversations)


def workload(shape: Shape, salt: str) -> Workload:
    """The workload of `shape`: identical for every salt but for the contexts' first line."""
    rng = random.Random(shape.seed)
    contexts = tuple(_context(rng, shape, i, salt) for i in range(shape.contexts))
    start, conversations = 0.0, []
    for _ in range(shape.conversations):
        start += rng.expovariate(shape.rate)
        questions = tuple(_words(rng, shape.question_words) + "?" for _ in range(shape.turns))
        pauses = tuple(rng.expovariate(1 / shape.think_s) if shape.think_s else 0.0
                       for _ in range(shape.turns - 1))  # fmt: skip
        conversations.append(Conversation(rng.randrange(shape.contexts), start, questions, pauses))
    return Workload(shape, contexts, tuple(conversations))


def _context(rng: random.Random, shape: Shape, index: int, salt: str) -> str:
    return (
        f"Session {salt}. You are the support assistant for product line {index}. Answer from "
        f"the documents below only. Documents: {_words(rng, shape.context_words)}."
    )


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))
