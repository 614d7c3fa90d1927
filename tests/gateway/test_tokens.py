from __future__ import annotations

from strata.gateway.body import parse_generation
from strata.gateway.tokens import estimate_prompt_tokens


def test_estimate_leans_high_for_english_and_counts_token_ids() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 20  # ~200 real tokens
    chat = parse_generation(
        "chat", {"model": "m", "messages": [{"role": "user", "content": text}]}, 5
    )
    assert 200 <= estimate_prompt_tokens(chat) <= 400
    ids = parse_generation("completions", {"model": "m", "prompt": [[1, 2], [3]]}, 1)
    assert estimate_prompt_tokens(ids) == 3


def test_each_message_adds_template_tokens() -> None:
    one = {"model": "m", "messages": [{"role": "user", "content": "abc"}]}
    two = {"model": "m", "messages": [{"role": "user", "content": "abc"}] * 2}
    a = estimate_prompt_tokens(parse_generation("chat", one, 5))
    b = estimate_prompt_tokens(parse_generation("chat", two, 5))
    assert b - a == 1 + 4  # one more token of text and one message's template
