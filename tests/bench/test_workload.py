"""Synthetic workloads: repeatable from the seed, lengths within their bounds, specs parsed."""

from __future__ import annotations

import random
import statistics

import pytest

from strata.bench.words import WORDS
from strata.bench.workload import (
    CHAT_OUTPUT,
    CHAT_PROMPT,
    Fixed,
    LogNormal,
    Uniform,
    Workload,
    parse_length,
)
from strata.errors import ConfigError

CHAT_LIKE = Workload(CHAT_PROMPT, CHAT_OUTPUT, shared_prefix_tokens=12, seed=7)


def test_the_same_seed_gives_the_same_requests() -> None:
    again = Workload(CHAT_PROMPT, CHAT_OUTPUT, shared_prefix_tokens=12, seed=7)
    assert [CHAT_LIKE.request(i) for i in range(50)] == [again.request(i) for i in range(50)]


def test_a_request_depends_only_on_its_index_not_on_the_order_asked() -> None:
    forward = [CHAT_LIKE.request(i) for i in range(20)]
    backward = [CHAT_LIKE.request(i) for i in reversed(range(20))]
    assert forward == backward[::-1]


def test_another_seed_gives_other_prompts_and_lengths() -> None:
    other = Workload(CHAT_PROMPT, CHAT_OUTPUT, shared_prefix_tokens=12, seed=8)
    mine = [CHAT_LIKE.request(i) for i in range(20)]
    theirs = [other.request(i) for i in range(20)]
    assert [r.prompt for r in mine] != [r.prompt for r in theirs]
    assert [r.output_tokens for r in mine] != [r.output_tokens for r in theirs]
    assert CHAT_LIKE.prefix != other.prefix


def test_requests_differ_from_each_other_but_share_the_prefix() -> None:
    requests = [CHAT_LIKE.request(i) for i in range(20)]
    assert len({r.prompt for r in requests}) == 20
    assert {r.prefix for r in requests} == {CHAT_LIKE.prefix}
    assert len(CHAT_LIKE.prefix.split()) == 12


def test_a_prompt_has_as_many_words_from_the_list_as_planned_tokens() -> None:
    workload = Workload(Uniform(5, 40), Fixed(3), seed=1)
    for index in range(30):
        spec = workload.request(index)
        words = spec.prompt.split()
        assert len(words) == spec.prompt_tokens and set(words) <= set(WORDS)
        assert spec.prefix == "" and spec.output_tokens == 3


@pytest.mark.parametrize(
    "dist", [Fixed(9), Uniform(20, 120), LogNormal(100, 1.2, 10, 400), CHAT_PROMPT, CHAT_OUTPUT]
)
def test_lengths_stay_within_bounds(dist: Fixed | Uniform | LogNormal) -> None:
    rng = random.Random(3)
    low, high = dist.bounds
    samples = [dist.sample(rng) for _ in range(5000)]
    assert low <= min(samples) and max(samples) <= high


def test_uniform_reaches_both_ends() -> None:
    rng = random.Random(0)
    assert {Uniform(3, 6).sample(rng) for _ in range(500)} == {3, 4, 5, 6}


def test_the_chat_mix_is_long_tailed_around_its_median() -> None:
    rng = random.Random(0)
    samples = [CHAT_PROMPT.sample(rng) for _ in range(20_000)]
    assert 0.8 * 128 < statistics.median(samples) < 1.2 * 128
    assert statistics.mean(samples) > statistics.median(samples)  # the long tail
    assert max(samples) > 8 * 128


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("128", Fixed(128)),
        ("uniform:20:120", Uniform(20, 120)),
        ("lognormal:64:0.5:8:256", LogNormal(64, 0.5, 8, 256)),
        ("chat", CHAT_OUTPUT),
    ],
)
def test_length_specs_parse_and_print_back(text: str, expected: object) -> None:
    dist = parse_length(text, CHAT_OUTPUT)
    assert dist == expected
    assert parse_length(dist.spec, CHAT_OUTPUT) == dist


@pytest.mark.parametrize(
    "text", ["0", "-3", "uniform:9:2", "uniform:5", "lognormal:64:0.5", "chat:3", "x", "1.5"]
)
def test_bad_length_specs_name_the_option(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_length(text, CHAT_OUTPUT, "--output-len")
    assert "--output-len" in info.value.message or "length" in info.value.message
