"""The streamed relay records TTFT when text leaves for the client, not when it arrives: the
answer guard holds back a tail of the text, so the two can be many events apart."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from strata.gateway.answer_guard import AnswerGuard
from strata.gateway.call import Call
from strata.gateway.principal import Principal
from strata.gateway.relay import _events
from strata.guard import GuardPolicy, OutputFilter


def _call() -> Call:
    return Call("req-1", Principal("k", "acme", "alice", "user"), "m", 10, 64)


def _event(text: str, finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": {"content": text}, "finish_reason": finish}
    return orjson.dumps({"choices": [choice]})


async def _upstream(payloads: list[bytes]) -> AsyncIterator[bytes]:
    for payload in payloads:
        yield payload


async def _relay(call: Call, payloads: list[bytes], guard: AnswerGuard | None) -> list[bool]:
    """For each event the client receives: whether TTFT had been recorded when it left."""
    seen = []
    async for frame in _events(call, _upstream(payloads), False, guard):
        if frame.startswith(b"data: {"):
            seen.append(call.first_token_at is not None)
    return seen


async def test_without_the_guard_the_first_text_event_is_the_first_token() -> None:
    call = _call()
    assert await _relay(call, [_event("Hello"), _event(" there", "stop")], None) == [True, True]
    assert call.chunks == 2


async def test_text_the_guard_holds_back_is_not_yet_a_first_token() -> None:
    call = _call()
    guard = AnswerGuard(lambda: OutputFilter(GuardPolicy()))  # holds back a short tail
    words = [_event(f"word{i} ") for i in range(30)] + [_event("end.", "stop")]
    recorded = await _relay(call, words, guard)
    assert recorded[0] is False  # "word0 " went out as "" (held back): no TTFT yet
    assert recorded[-1] is True and call.first_token_at is not None
    assert call.chunks == 31  # the token estimate still counts what the upstream sent
