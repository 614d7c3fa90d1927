from __future__ import annotations

import json
from typing import Any

import pytest

from strata.errors import InvalidRequestError
from strata.gateway.body import parse_generation
from strata.gateway.request_logs.transcript import (
    REDACTION_MARGIN,
    SESSION_HEADER,
    Transcript,
    prompt_messages,
    session_id,
)


def _chat(**raw: Any) -> Any:
    return parse_generation("chat", {"model": "m", **raw}, max_messages=100)


def test_the_session_is_the_header_and_a_bad_one_is_a_400_naming_it() -> None:
    assert session_id({}) is None
    assert session_id({SESSION_HEADER: "conv-42/turn:3"}) == "conv-42/turn:3"
    for bad in ("", "x" * 129, "has space", "tab\t", "naïve"):
        with pytest.raises(InvalidRequestError) as caught:
            session_id({SESSION_HEADER: bad})
        assert caught.value.param == SESSION_HEADER


def test_prompt_messages_keep_roles_join_parts_and_leave_names_out() -> None:
    body = _chat(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "name": "Alice Smith", "content": [
                {"type": "text", "text": "first"}, {"type": "image_url"},
                {"type": "text", "text": "second"},
            ]},
            {"role": "assistant", "tool_calls": [{"id": "t"}]},
        ],
    )  # fmt: skip
    assert prompt_messages(body) == (
        ("system", "Be brief."),
        ("user", "first\nsecond"),
        ("assistant", ""),
    )


def test_completion_prompts_are_logged_as_prompt_messages() -> None:
    body = parse_generation("completions", {"model": "m", "prompt": ["a", "b"]}, 10)
    assert prompt_messages(body) == (("prompt", "a"), ("prompt", "b"))


def test_the_end_user_is_the_openai_user_field() -> None:
    body = _chat(messages=[{"role": "user", "content": "x"}], user="u-7")
    script = Transcript.of(body, None, 100)
    assert (script.end_user, script.session, script.stream) == ("u-7", None, False)


def _event(text: str, index: int = 0, holder: str = "delta") -> bytes:
    return json.dumps({"choices": [{"index": index, holder: {"content": text}}]}).encode()


def test_a_stream_is_collected_per_choice_from_deltas() -> None:
    script = Transcript((), None, None, True, 1000)
    for payload in (_event("Hel"), _event("A", 1), _event("lo"), b"not json", b"[1]",
                    json.dumps({"choices": [{"index": 0, "delta": {}}]}).encode()):  # fmt: skip
        script.note_event(payload)
    assert script.answer == "Hello\n\nA"


def test_a_complete_answer_is_read_from_message_or_text() -> None:
    chat = Transcript((), None, None, False, 1000)
    chat.note_body(_event("The answer.", holder="message"))
    text = Transcript((), None, None, False, 1000)
    text.note_body(json.dumps({"choices": [{"index": 0, "text": "Completed."}]}).encode())
    assert (chat.answer, text.answer) == ("The answer.", "Completed.")


def test_the_answer_stops_growing_past_the_limit_and_margin() -> None:
    script = Transcript((), None, None, True, 100)
    for _ in range(100):
        script.note_event(_event("x" * 100))
    assert len(script.answer) == 100 + REDACTION_MARGIN and script.truncated
