"""Deltas become OpenAI objects and SSE events: one id per request, ids only on request."""

from __future__ import annotations

import json
from typing import Any

from strata.engine.formatting import ChatFormat, TextFormat, joined
from strata.engine.outputs import Delta


def delta(text: str, ids: tuple[int, ...], reason: Any = None, produced: int = 0) -> Delta:
    return Delta(
        "r", ids, text, reason, prompt_tokens=5, completion_tokens=produced, cached_tokens=2
    )


DELTAS = [delta("Hel", (1,), produced=1), delta("lo", (2, 3), "length", produced=3)]


def payload(event: str) -> dict[str, Any]:
    assert event.startswith("data: ") and event.endswith("\n\n")
    return dict(json.loads(event[len("data: ") :]))


def test_chat_stream_opens_with_the_assistant_role() -> None:
    (opening,) = ChatFormat("chatcmpl-1", "m", False).opening()
    data = payload(opening)
    assert data["object"] == "chat.completion.chunk"
    assert data["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_chat_chunks_share_id_and_created_and_carry_finish_reason() -> None:
    fmt = ChatFormat("chatcmpl-1", "m", True)
    first, last = (payload(fmt.chunk(d) or "") for d in DELTAS)
    assert first["id"] == last["id"] == "chatcmpl-1"
    assert first["created"] == last["created"]
    assert last["choices"][0]["finish_reason"] == "length"
    assert last["choices"][0]["token_ids"] == [2, 3]


def test_empty_deltas_are_skipped_unless_they_carry_wanted_ids() -> None:
    held_back = delta("", (9,), produced=1)  # e.g. half of a multi-byte character
    assert ChatFormat("c", "m", False).chunk(held_back) is None
    assert ChatFormat("c", "m", True).chunk(held_back) is not None


def test_usage_chunk_has_no_choices() -> None:
    data = payload(TextFormat("cmpl-1", "m", False).usage(DELTAS[-1]))
    assert data["choices"] == []
    assert data["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
        "prompt_tokens_details": {"cached_tokens": 2},
    }


def test_whole_chat_response() -> None:
    response = ChatFormat("chatcmpl-1", "m", True).response(DELTAS)
    data = response.model_dump(mode="json")
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": "Hello"}
    assert data["choices"][0]["token_ids"] == [1, 2, 3]
    assert data["usage"]["completion_tokens"] == 3


def test_whole_text_completion_without_ids() -> None:
    data = TextFormat("cmpl-1", "m", False).response(DELTAS).model_dump(mode="json")
    assert data["object"] == "text_completion"
    assert data["choices"][0]["text"] == "Hello"
    assert "token_ids" not in data["choices"][0]
    assert data["choices"][0]["finish_reason"] == "length"


def test_done_and_joined() -> None:
    assert ChatFormat("c", "m", False).done() == "data: [DONE]\n\n"
    assert joined(DELTAS) == ("Hello", (1, 2, 3))
