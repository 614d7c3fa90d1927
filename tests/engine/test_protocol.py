"""OpenAI request parsing, unsupported features, conversion to SamplingParams, response shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from strata.engine.outputs import Delta
from strata.engine.protocol import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    CompletionChoice,
    CompletionRequest,
    DeltaMessage,
    Usage,
    sse_event,
)
from strata.errors import InvalidRequestError


def chat(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return ChatCompletionRequest.model_validate(body)


def completion(**fields: Any) -> CompletionRequest:
    return CompletionRequest.model_validate({"model": "m", "prompt": "hi", **fields})


def error_of(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    message = first["ctx"]["error"] if first["type"] == "value_error" else first["msg"]
    return ".".join(str(p) for p in first["loc"]), str(message)


def test_minimal_chat_request_takes_openai_defaults() -> None:
    request = chat()
    params = request.to_sampling_params(room=100)
    assert params.max_tokens == 100  # chat: the rest of the context window
    assert (params.temperature, params.top_p, params.top_k) == (1.0, 1.0, 0)
    assert request.stream is False and request.include_usage is False


def test_unknown_fields_are_ignored() -> None:
    request = chat(metadata={"a": 1}, store=False, parallel_tool_calls=True)
    assert request.messages[0].text == "hi"


def test_content_parts_are_joined_and_roles_mapped_for_the_template() -> None:
    request = chat(
        messages=[
            {"role": "developer", "content": "be brief"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"role": "assistant", "content": None},
        ]
    )
    assert request.template_messages() == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a\nb"},
        {"role": "assistant", "content": ""},
    ]


@pytest.mark.parametrize(
    ("fields", "path", "needle"),
    [
        ({"n": 2}, "n", "only n=1"),
        ({"logprobs": True}, "logprobs", "not supported"),
        ({"top_logprobs": 3}, "top_logprobs", "not supported"),
        ({"presence_penalty": 0.5}, "presence_penalty", "only 0"),
        ({"frequency_penalty": -1}, "frequency_penalty", "only 0"),
        ({"logit_bias": {"5": 1.0}}, "logit_bias", "not supported"),
        ({"tools": [{"type": "function"}]}, "tools", "not supported"),
        ({"response_format": {"type": "json_object"}}, "response_format", "text"),
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"max_completion_tokens": 0}, "max_completion_tokens", "greater than or equal"),
        ({"temperature": "hot"}, "temperature", "valid number"),
        ({"stream": "maybe"}, "stream", "valid boolean"),
        ({"top_k": 2**40}, "top_k", "less than or equal"),
        ({"seed": 2**70}, "seed", "less than or equal"),
        ({"stop_token_ids": [1, -1]}, "stop_token_ids.1", "greater than or equal"),
        ({"temperature": float("nan")}, "temperature", "greater than or equal"),
        ({"messages": []}, "messages", "at least 1"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role", "Input should"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content", "string or a list"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages.0.content.0",
            "only text content parts",
        ),
    ],
)
def test_bad_or_unsupported_fields_name_the_field(
    fields: dict[str, Any], path: str, needle: str
) -> None:
    with pytest.raises(ValidationError) as info:
        chat(**fields)
    got_path, message = error_of(info.value)
    assert got_path == path
    assert needle in message


def test_accepted_neutral_values_of_unsupported_features() -> None:
    request = chat(n=1, logprobs=False, presence_penalty=0, frequency_penalty=0.0, tools=[])
    assert request.n == 1


def test_max_completion_tokens_wins_over_max_tokens() -> None:
    assert chat(max_tokens=5, max_completion_tokens=7).to_sampling_params(room=100).max_tokens == 7
    assert chat(max_tokens=5).to_sampling_params(room=100).max_tokens == 5


def test_an_explicit_max_tokens_is_not_capped_so_the_engine_can_reject_it() -> None:
    assert chat(max_tokens=500).to_sampling_params(room=10).max_tokens == 500


def test_sampling_fields_carry_over() -> None:
    params = chat(
        temperature=0,
        top_p=0.5,
        top_k=-1,
        seed=7,
        stop="END",
        stop_token_ids=[2],
        ignore_eos=True,
        min_tokens=2,
        max_tokens=9,
    ).to_sampling_params(room=100)
    assert params.greedy
    assert (params.top_p, params.top_k, params.seed) == (0.5, 0, 7)
    assert params.stop == ("END",) and params.stop_token_ids == (2,)
    assert params.ignore_eos and params.min_tokens == 2


def test_sampling_params_errors_name_their_field() -> None:
    with pytest.raises(InvalidRequestError) as info:
        chat(min_tokens=50, max_tokens=3).to_sampling_params(room=100)
    assert info.value.param == "min_tokens"
    with pytest.raises(InvalidRequestError) as info:
        chat(stop=["x"] * 17).to_sampling_params(room=100)
    assert info.value.param == "stop"


def test_completions_default_to_16_tokens_capped_by_the_room() -> None:
    assert completion().to_sampling_params(room=100).max_tokens == 16
    assert completion().to_sampling_params(room=5).max_tokens == 5
    assert completion(max_tokens=40).to_sampling_params(room=100).max_tokens == 40


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [("hello", "hello"), (["hello"], "hello"), ([1, 2, 3], [1, 2, 3]), ([[4, 5]], [4, 5])],
)
def test_prompt_forms(prompt: Any, expected: Any) -> None:
    assert completion(prompt=prompt).prompt == expected


@pytest.mark.parametrize(
    ("prompt", "needle"),
    [
        (["a", "b"], "only one prompt"),
        ([1, -2], "non-negative"),
        ([1, True], "non-negative integers"),
        ([1.5], "non-negative integers"),
        (7, "string or a list"),
    ],
)
def test_bad_prompts_name_the_prompt(prompt: Any, needle: str) -> None:
    with pytest.raises(ValidationError) as info:
        completion(prompt=prompt)
    path, message = error_of(info.value)
    assert path == "prompt" and needle in message


@pytest.mark.parametrize(
    "fields", [{"logprobs": 1}, {"echo": True}, {"best_of": 3}, {"suffix": "x"}, {"n": 3}]
)
def test_unsupported_completion_features(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        completion(**fields)
    assert error_of(info.value)[0] == next(iter(fields))


def test_stream_options_include_usage() -> None:
    assert chat(stream=True, stream_options={"include_usage": True}).include_usage
    assert not chat(stream=True, stream_options={}).include_usage


def test_usage_from_the_last_delta() -> None:
    delta = Delta("r", (1,), "x", "stop", prompt_tokens=10, completion_tokens=4, cached_tokens=8)
    usage = Usage.from_delta(delta)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (10, 4, 14)
    assert usage.prompt_tokens_details.cached_tokens == 8


def test_token_ids_and_usage_appear_only_when_set() -> None:
    chunk = ChatCompletionChunk(
        id="c", model="m", choices=[ChatChunkChoice(delta=DeltaMessage(content="a"))]
    )
    data = json.loads(chunk.model_dump_json())
    assert "token_ids" not in data["choices"][0] and "usage" not in data
    assert data["choices"][0]["finish_reason"] is None
    assert data["choices"][0]["delta"] == {"content": "a"}
    choice = CompletionChoice(text="a", token_ids=[5])
    assert json.loads(choice.model_dump_json())["token_ids"] == [5]


def test_sse_event_framing() -> None:
    assert sse_event({"a": 1}) == 'data: {"a": 1}\n\n'
    chunk = ChatCompletionChunk(id="c", model="m", choices=[])
    assert sse_event(chunk).startswith('data: {"id":"c"') and sse_event(chunk).endswith("}\n\n")


def test_unset_sampling_fields_take_the_model_defaults() -> None:
    from strata.engine.generation_config import SamplingDefaults

    defaults = SamplingDefaults(temperature=0.0, top_p=0.8, top_k=20)
    params = chat().to_sampling_params(room=100, defaults=defaults)
    assert (params.temperature, params.top_p, params.top_k) == (0.0, 0.8, 20)
    asked = chat(temperature=0.7, top_p=0.5, top_k=3).to_sampling_params(
        room=100, defaults=defaults
    )
    assert (asked.temperature, asked.top_p, asked.top_k) == (0.7, 0.5, 3)
