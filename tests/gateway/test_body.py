from __future__ import annotations

import pytest

from strata.errors import InvalidRequestError
from strata.gateway.body import parse_generation, parse_json


def _chat(**extra: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_chat_body_reads_what_the_gateway_acts_on() -> None:
    body = parse_generation(
        "chat",
        _chat(stream=True, stream_options={"include_usage": True}, max_completion_tokens=7),
        max_messages=10,
    )
    assert (body.model, body.stream, body.include_usage, body.max_tokens) == ("m", True, True, 7)
    assert body.texts == (("messages.0.content", "hi"),)


def test_unknown_and_optional_fields_are_forwarded_untouched() -> None:
    raw = _chat(tools=[{"type": "function"}], n=2, custom_field={"a": 1})
    out = parse_generation("chat", raw, 10).upstream_body("served", 64)
    assert out["tools"] == [{"type": "function"}] and out["n"] == 2
    assert out["custom_field"] == {"a": 1}
    assert out["model"] == "served" and out["max_tokens"] == 64


def test_upstream_body_clamps_the_field_the_caller_used_and_asks_for_usage() -> None:
    raw = _chat(max_completion_tokens=5000, stream=True)
    out = parse_generation("chat", raw, 10).upstream_body("s", 100)
    assert out["max_completion_tokens"] == 100 and "max_tokens" not in out
    assert out["stream_options"] == {"include_usage": True}
    assert raw["max_completion_tokens"] == 5000  # the caller's dict is not mutated


def test_text_parts_are_named_by_path() -> None:
    raw = _chat(
        messages=[
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "image_url"}]},
        ]
    )
    body = parse_generation("chat", raw, 10)
    assert body.texts == (("messages.0.content", "sys"), ("messages.1.content.0.text", "a"))
    assert body.num_messages == 2


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        (_chat(messages=[]), "messages"),
        (_chat(messages=[{"role": "boss", "content": "x"}]), "messages.0.role"),
        (_chat(max_tokens=0), "max_tokens"),
        (_chat(max_tokens="many"), "max_tokens"),
        (_chat(stream="yes"), "stream"),
        (_chat(messages=[{"role": "user", "content": 5}]), "messages.0.content"),
    ],
)
def test_bad_fields_are_named(raw: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_generation("chat", raw, 10)
    assert caught.value.param is not None and caught.value.param.startswith(param)


def test_too_many_messages_is_a_400_naming_messages() -> None:
    raw = _chat(messages=[{"role": "user", "content": "x"}] * 3)
    with pytest.raises(InvalidRequestError) as caught:
        parse_generation("chat", raw, max_messages=2)
    assert caught.value.param == "messages" and "3 messages" in caught.value.message


def test_completion_prompts_in_every_openai_shape() -> None:
    assert parse_generation("completions", {"model": "m", "prompt": "x"}, 1).texts == (
        ("prompt", "x"),
    )
    ids = parse_generation("completions", {"model": "m", "prompt": [1, 2, 3]}, 1)
    assert ids.prompt_token_ids == 3 and ids.texts == ()
    batch = parse_generation("completions", {"model": "m", "prompt": ["a", "b"]}, 1)
    assert batch.texts == (("prompt.0", "a"), ("prompt.1", "b"))


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b"", "invalid_json"), (b"{nope", "invalid_json"), (b"[1, 2]", "invalid_json")],
)
def test_body_that_is_not_a_json_object(raw: bytes, code: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_json(raw)
    assert caught.value.code == code
