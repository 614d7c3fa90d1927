"""Relaying an upstream's answer to the client while keeping count of what it cost.

Non-streamed answers pass through as the upstream's bytes. Streams are re-framed event by
event: the usage chunk the gateway always asks for is kept only when the caller asked for it
too, a failure mid-stream becomes one OpenAI error event (no text is ever repeated), and however
the stream ends — done, failed, or the client gone — the call is finished exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import anyio
import orjson
from starlette.responses import Response, StreamingResponse

from strata.errors import StrataError
from strata.gateway.answer_guard import AnswerGuard
from strata.gateway.call import Call, TokenUsage
from strata.http_errors import strata_error_body

CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away"; only the ledger sees it
DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
_USAGE_MARKS = (b'"usage":{', b'"usage": {')
# Compact JSON and Python's json.dumps spacing, like _USAGE_MARKS: else no TTFT is recorded.
_TEXT_MARKS = (b'"content":"', b'"text":"', b'"content": "', b'"text": "')
_EMPTY_TEXT_MARKS = (b'"content":""', b'"text":""', b'"content": ""', b'"text": ""')

Finish = Callable[[Call], Awaitable[None]]


class Reply(Protocol):
    """What the router hands back: a complete body or a stream of SSE data payloads."""

    status: int
    body: bytes | None
    events: AsyncIterator[bytes] | None

    async def aclose(self) -> None: ...


def json_response(
    call: Call, reply: Reply, headers: dict[str, str], guard: AnswerGuard | None = None
) -> Response:
    """A non-streamed answer: the upstream's own bytes and status (filtered by `guard`)."""
    body = reply.body or b""
    call.status = reply.status
    if reply.status < 400:
        call.note_body(body)
        if guard is not None:
            body = _guarded_body(call, guard, body)
        if call.transcript is not None:
            call.transcript.note_body(body)
    return Response(body, status_code=reply.status, media_type="application/json", headers=headers)


def _guarded_body(call: Call, guard: AnswerGuard, body: bytes) -> bytes:
    try:
        return guard.body(body)
    except StrataError as exc:
        call.status, call.error_code = exc.status_code, exc.code or exc.error_type
        raise
    finally:
        call.output_findings = guard.findings


def stream_response(
    call: Call,
    reply: Reply,
    include_usage: bool,
    finish: Finish,
    headers: dict[str, str],
    guard: AnswerGuard | None = None,
) -> StreamingResponse:
    assert reply.events is not None
    events = _events(call, reply.events, include_usage, guard)
    return StreamingResponse(
        _finishing(call, reply, events, finish),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **headers},
    )


async def _events(
    call: Call, events: AsyncIterator[bytes], include_usage: bool, guard: AnswerGuard | None
) -> AsyncIterator[bytes]:
    try:
        async for payload in events:
            if payload == b"[DONE]":
                break
            if any(mark in payload for mark in _USAGE_MARKS) and _usage_only(call, payload):
                if include_usage:
                    yield b"data: " + payload + b"\n\n"
                continue
            upstream_text = _has_text(payload)
            if upstream_text:
                call.note_chunk()
            if guard is not None:
                payload = guard.event(payload)
            if upstream_text if guard is None else _has_text(payload):
                call.note_relayed_text()  # TTFT: when text leaves, not when it arrives
            if call.transcript is not None:
                call.transcript.note_event(payload)
            yield b"data: " + payload + b"\n\n"
        yield DONE
    finally:
        if guard is not None:
            call.output_findings = guard.findings


async def _finishing(
    call: Call, reply: Reply, events: AsyncIterator[bytes], finish: Finish
) -> AsyncIterator[bytes]:
    try:
        async for frame in events:
            yield frame
    except StrataError as exc:
        call.status, call.error_code = exc.status_code, exc.code or exc.error_type
        yield b"data: " + orjson.dumps(strata_error_body(exc)) + b"\n\n"
    except (asyncio.CancelledError, GeneratorExit):
        call.status, call.error_code = CLIENT_CLOSED_REQUEST, "client_closed"
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await reply.aclose()
            await finish(call)


def _usage_only(call: Call, payload: bytes) -> bool:
    """Record the usage in `payload`; True when the event carries nothing else."""
    try:
        event: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(event, dict):
        return False
    usage = TokenUsage.from_json(event.get("usage"))
    if usage is not None:
        call.usage = usage
    return usage is not None and not event.get("choices")


def _has_text(payload: bytes) -> bool:
    return any(m in payload for m in _TEXT_MARKS) and not any(
        m in payload for m in _EMPTY_TEXT_MARKS
    )
