"""Synthetic workloads: how long prompts and outputs are, and the prompts themselves.

A `Workload` is a recipe. `Workload.request(i)` turns it into request i, which depends only on
the seed and i: the same seed gives the same prompts and lengths in every run, whatever order
the requests are sent in. Lengths are in tokens, but this module has no tokenizer: a prompt of
N tokens is N words from `WORDS`, each close to one token on common BPE vocabularies. The chat
template and a BOS token add a few more, so the prompt tokens a report shows come from the
server's `usage`, not from here.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from strata.bench.words import WORDS
from strata.errors import ConfigError


class LengthDist(ABC):
    """A distribution of token counts. `sample` draws from the caller's RNG, never its own."""

    @abstractmethod
    def sample(self, rng: random.Random) -> int: ...

    @property
    @abstractmethod
    def bounds(self) -> tuple[int, int]:
        """The smallest and largest count `sample` can return."""

    @property
    @abstractmethod
    def spec(self) -> str:
        """The `--prompt-len` / `--output-len` text that parses back to this distribution."""


@dataclass(frozen=True)
class Fixed(LengthDist):
    tokens: int

    def sample(self, rng: random.Random) -> int:
        return self.tokens

    @property
    def bounds(self) -> tuple[int, int]:
        return self.tokens, self.tokens

    @property
    def spec(self) -> str:
        return str(self.tokens)


@dataclass(frozen=True)
class Uniform(LengthDist):
    low: int
    high: int  # inclusive

    def sample(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)

    @property
    def bounds(self) -> tuple[int, int]:
        return self.low, self.high

    @property
    def spec(self) -> str:
        return f"uniform:{self.low}:{self.high}"


@dataclass(frozen=True)
class LogNormal(LengthDist):
    """Long-tailed, like chat traffic: most lengths near `median`, a few many times longer,
    clipped to [low, high]. `sigma` is the spread of the log (1.0: a p90 about 3.6× the median)."""

    median: int
    sigma: float
    low: int
    high: int

    def sample(self, rng: random.Random) -> int:
        drawn = rng.lognormvariate(math.log(self.median), self.sigma)
        return min(self.high, max(self.low, round(drawn)))

    @property
    def bounds(self) -> tuple[int, int]:
        return self.low, self.high

    @property
    def spec(self) -> str:
        return f"lognormal:{self.median}:{self.sigma:g}:{self.low}:{self.high}"


# `chat`: shaped after public chat traces (ShareGPT-like): prompts median ~128 tokens with a
# long tail, answers median ~160 with a shorter one.
CHAT_PROMPT = LogNormal(median=128, sigma=1.0, low=4, high=2048)
CHAT_OUTPUT = LogNormal(median=160, sigma=0.8, low=4, high=1024)


def parse_length(text: str, chat: LengthDist, option: str = "--prompt-len") -> LengthDist:
    """`128`, `uniform:MIN:MAX`, `lognormal:MEDIAN:SIGMA:MIN:MAX` or `chat` (the `chat` preset
    given). A bad spec raises ConfigError naming `option`."""
    kind, *args = text.strip().split(":")
    try:
        dist = _build(kind, args, chat)
    except ValueError as exc:
        raise ConfigError(f"{option} {text!r}: {exc}") from None
    _check_bounds(dist)
    return dist


def _build(kind: str, args: list[str], chat: LengthDist) -> LengthDist:
    if kind == "chat" and not args:
        return chat
    if kind == "uniform" and len(args) == 2:
        return Uniform(int(args[0]), int(args[1]))
    if kind == "lognormal" and len(args) == 4:
        return LogNormal(int(args[0]), float(args[1]), int(args[2]), int(args[3]))
    if kind.isdigit() and not args:
        return Fixed(int(kind))
    raise ValueError("expected N, uniform:MIN:MAX, lognormal:MEDIAN:SIGMA:MIN:MAX or chat")


def _check_bounds(dist: LengthDist) -> None:
    low, high = dist.bounds
    if not 1 <= low <= high:
        raise ConfigError(f"length {dist.spec}: needs 1 <= min <= max")
    if isinstance(dist, LogNormal) and not (dist.sigma >= 0 and low <= dist.median <= high):
        raise ConfigError(f"length {dist.spec}: needs sigma >= 0 and min <= median <= max")


@dataclass(frozen=True)
class RequestSpec:
    """What request `index` asks for. `prefix` is the same for every request of a workload."""

    index: int
    prefix: str
    prompt: str
    prompt_tokens: int  # the target for `prompt` alone, approximate (see the module docstring)
    output_tokens: int


@dataclass(frozen=True)
class Workload:
    """Prompt and output lengths, an optional shared prefix, and the seed that fixes them.

    `shared_prefix_tokens` words open every request (the system message on the chat endpoint),
    on top of the prompt length: it exercises the server's prefix cache.
    """

    prompt_len: LengthDist = Fixed(128)
    output_len: LengthDist = Fixed(128)
    shared_prefix_tokens: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.shared_prefix_tokens < 0:
            raise ConfigError("--shared-prefix-tokens: must be >= 0")

    def request(self, index: int) -> RequestSpec:
        rng = random.Random(f"strata-bench:{self.seed}:{index}")
        prompt_tokens = self.prompt_len.sample(rng)
        output_tokens = self.output_len.sample(rng)
        prompt = words(rng, prompt_tokens)
        return RequestSpec(index, self.prefix, prompt, prompt_tokens, output_tokens)

    @cached_property
    def prefix(self) -> str:
        return words(random.Random(f"strata-bench:{self.seed}:prefix"), self.shared_prefix_tokens)

    def describe(self) -> dict[str, Any]:
        return {
            "prompt_len": self.prompt_len.spec,
            "output_len": self.output_len.spec,
            "shared_prefix_tokens": self.shared_prefix_tokens,
            "seed": self.seed,
        }


def words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choices(WORDS, k=count))
