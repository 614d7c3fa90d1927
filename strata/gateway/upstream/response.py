"""One HTTP response as it arrives, read by one task: status, headers, then body chunks.

A producer (a socket's protocol in `http_client`, an in-process ASGI app in `asgi`) calls the
`on_*` methods from the event loop; the consumer awaits `wait_head()`, then iterates the body or
`read()`s it whole. The producer owns the transport and learns, through `ResponseOwner`, when to
pause (too much unread body) and when the consumer is done: `finished()` is called exactly once,
when the body has been read to the end or `aclose()` abandoned it. An abandoned response is how a
disconnected client aborts the upstream's work, so owners close the transport then.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from strata.gateway.upstream.errors import TransportError

HIGH_WATER = 256 * 1024  # unread body bytes (per response) before the producer is paused


class ResponseOwner(Protocol):
    def pause(self) -> None:
        """Stop producing body until `resume()`."""

    def resume(self) -> None: ...

    def finished(self, response: Response) -> None:
        """The consumer is done; `response.complete` says whether it read the whole body."""


class Response:
    """Status, headers (raw `(name, value)` bytes as received) and a streamed body."""

    __slots__ = (
        "_chunks",
        "_closed",
        "_error",
        "_has_head",
        "_loop",
        "_owner",
        "_paused",
        "_size",
        "_waiter",
        "complete",
        "headers",
        "status",
    )

    def __init__(self, owner: ResponseOwner, loop: asyncio.AbstractEventLoop) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False  # the whole body has arrived
        self._owner = owner
        self._loop = loop
        self._chunks: list[bytes] = []
        self._size = 0
        self._error: TransportError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._has_head = False
        self._closed = False
        self._paused = False

    def header(self, name: bytes) -> bytes | None:
        """The first header called `name` (lower-case), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    # -- producer side ---------------------------------------------------------------------

    def on_head(self, status: int) -> None:
        self.status = status
        self._has_head = True
        self._wake()

    def on_body(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)
        if self._size > HIGH_WATER and not self._paused:
            self._paused = True
            self._owner.pause()
        self._wake()

    def on_end(self) -> None:
        self.complete = True
        self._wake()

    def on_error(self, error: TransportError) -> None:
        if not self.complete and self._error is None:
            self._error = error
            self._wake()

    # -- consumer side ---------------------------------------------------------------------

    async def wait_head(self) -> None:
        """Return once status and headers are in; raise the `TransportError` if none come."""
        while not self._has_head:
            if self._error is not None:
                raise self._error
            await self._wait()

    async def read(self) -> bytes:
        """The whole body (then the response is finished)."""
        parts = [chunk async for chunk in self]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def __aiter__(self) -> Response:
        return self

    async def __anext__(self) -> bytes:
        """The body that arrived since the last call; finishes the response at the end."""
        while not self._chunks:
            if self.complete:
                self._finish()
                raise StopAsyncIteration
            if self._error is not None:
                self._finish()
                raise self._error
            await self._wait()
        return self._take()

    async def aclose(self) -> None:
        """Done with this response; an unread body makes the owner drop the connection."""
        self._finish()

    # -- internals -------------------------------------------------------------------------

    def _take(self) -> bytes:
        chunks, self._chunks, self._size = self._chunks, [], 0
        if self._paused:
            self._paused = False
            self._owner.resume()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _wait(self) -> None:
        self._waiter = self._loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._owner.finished(self)
