"""Streams the router hands on: held back until they carry content, then never retried.

An upstream may accept a stream and fail before producing anything (a role-only first chunk,
then a dropped connection). `hold_until_content` reads events until the first one that carries
content: a choice with non-empty delta fields besides `role` (content, tool calls...) or
non-empty `text`, a `finish_reason`, `usage`, or `[DONE]`. A failure before that raises
`AttemptFailed`, so the router fails over without a byte having reached the client. After it,
`RoutedEvents` replays the held events and passes the rest on; a failure there ends the stream
with `UpstreamError` (the gateway turns it into an SSE error event) and is never retried, so no
text is ever sent twice.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

import orjson

from strata.errors import UpstreamError
from strata.gateway.upstream.errors import (
    AttemptFailed,
    DeadlineExceeded,
    FailureKind,
    TransportError,
)
from strata.gateway.upstream.upstreams import UpstreamReply

EventKind = Literal["empty", "content", "error"]


def classify(payload: bytes) -> EventKind:
    """What one SSE data payload is, as far as failover is concerned."""
    if payload == b"[DONE]":
        return "content"
    try:
        event: Any = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "content"  # not ours to judge: pass it on
    if not isinstance(event, dict):
        return "content"
    if "error" in event:
        return "error"
    if event.get("usage") or any(_has_content(c) for c in event.get("choices") or ()):
        return "content"
    return "empty"


def _has_content(choice: object) -> bool:
    if not isinstance(choice, dict):
        return False
    if choice.get("finish_reason") is not None or choice.get("text"):
        return True
    delta = choice.get("delta")
    return isinstance(delta, dict) and any(v for k, v in delta.items() if k != "role")


async def hold_until_content(reply: UpstreamReply) -> deque[bytes]:
    """The events up to and including the first with content. Raises `AttemptFailed` (the
    reply closed) when the stream fails, errs or ends before one."""
    assert reply.events is not None
    held: deque[bytes] = deque()
    try:
        async for payload in reply.events:
            kind = classify(payload)
            if kind == "error":
                raise AttemptFailed(reply.upstream, "sent an error event before any content")
            held.append(payload)
            if kind == "content":
                return held
    except TransportError as exc:
        await reply.aclose()
        failure: FailureKind = "timeout" if isinstance(exc, DeadlineExceeded) else "failed"
        reason = f"stream failed before any content: {exc}"
        raise AttemptFailed(reply.upstream, reason, kind=failure) from exc
    except BaseException:
        await reply.aclose()
        raise
    await reply.aclose()
    raise AttemptFailed(reply.upstream, "stream ended before any content")


class RoutedEvents:
    """The held events, then the rest of the upstream's; a `TransportError` midway becomes
    `UpstreamError` (and `on_failure()` is told, for the breaker)."""

    def __init__(
        self,
        upstream: str,
        held: deque[bytes],
        rest: AsyncIterator[bytes],
        on_failure: Callable[[str], None],
    ) -> None:
        self._upstream = upstream
        self._held = held
        self._rest = rest
        self._on_failure = on_failure

    def __aiter__(self) -> RoutedEvents:
        return self

    async def __anext__(self) -> bytes:
        if self._held:
            return self._held.popleft()
        try:
            return await self._rest.__anext__()
        except TransportError as exc:
            self._on_failure(str(exc))
            raise UpstreamError(
                f"The upstream '{self._upstream}' failed mid-stream ({exc}); the answer is "
                "incomplete.",
                code="upstream_stream_failed",
            ) from exc
