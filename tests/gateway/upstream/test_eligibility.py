from __future__ import annotations

from typing import Any

import pytest

from strata.gateway.upstream.eligibility import optional_fields_used


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": []},
        {"n": 1, "logprobs": False, "top_logprobs": 0, "tools": [], "tool_choice": "none"},
        {"functions": [], "logit_bias": {}, "presence_penalty": 0, "frequency_penalty": 0.0},
        {"echo": False, "best_of": 1, "suffix": "", "parallel_tool_calls": True},
        {"response_format": {"type": "text"}, "n": None, "tools": None},
    ],
)
def test_neutral_values_use_nothing(body: dict[str, Any]) -> None:
    assert optional_fields_used(body) == []


@pytest.mark.parametrize(
    ("body", "used"),
    [
        ({"n": 2}, ["n"]),
        ({"logprobs": 0}, ["logprobs"]),  # /completions: 0 asks for the sampled token's logprob
        ({"logprobs": True, "top_logprobs": 3}, ["logprobs", "top_logprobs"]),
        ({"tools": [{"type": "function"}], "tool_choice": "auto"}, ["tools", "tool_choice"]),
        ({"response_format": {"type": "json_object"}}, ["response_format"]),
        ({"presence_penalty": 0.5, "best_of": 3, "echo": True}, ["presence_penalty", "echo",
                                                                 "best_of"]),
        ({"suffix": "end", "logit_bias": {"1": 5}}, ["logit_bias", "suffix"]),
        ({"parallel_tool_calls": False, "functions": [{}]}, ["functions", "parallel_tool_calls"]),
    ],
)  # fmt: skip
def test_non_neutral_values_are_named(body: dict[str, Any], used: list[str]) -> None:
    assert optional_fields_used(body) == used
