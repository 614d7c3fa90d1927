from __future__ import annotations

import json
from typing import Any

import pytest

from strata.gateway.upstream.streaming import EventKind, classify


def chunk(**choice: Any) -> bytes:
    return json.dumps({"object": "chat.completion.chunk", "choices": [choice]}).encode()


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        (chunk(index=0, delta={"role": "assistant", "content": ""}, finish_reason=None), "empty"),
        (chunk(index=0, delta={}, finish_reason=None), "empty"),
        (chunk(index=0, text="", finish_reason=None), "empty"),
        (json.dumps({"choices": []}).encode(), "empty"),
        (chunk(index=0, delta={"content": "Hi"}, finish_reason=None), "content"),
        (chunk(index=0, delta={"tool_calls": [{"index": 0}]}, finish_reason=None), "content"),
        (chunk(index=0, text="Hi", finish_reason=None), "content"),
        (chunk(index=0, delta={}, finish_reason="length"), "content"),
        (json.dumps({"choices": [], "usage": {"total_tokens": 3}}).encode(), "content"),
        (b"[DONE]", "content"),
        (b"not json", "content"),
        (json.dumps({"error": {"message": "boom"}}).encode(), "error"),
    ],
)
def test_classify(payload: bytes, kind: EventKind) -> None:
    assert classify(payload) == kind
