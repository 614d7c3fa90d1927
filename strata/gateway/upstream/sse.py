"""Server-sent events, split out of a streamed body as raw `data` payloads (bytes).

`SseSplitter` follows the SSE rules a proxy meets in practice: `\\n`, `\\r\\n` or `\\r` line ends
(a `\\r\\n` may be split across two reads), events split anywhere across reads, `:` comments,
several `data:` lines joined by `\\n`, and a blank line ending each event. Only `data` is kept
(OpenAI-style streams use no `event:`/`id:`/`retry:`), byte for byte, without decoding: the
common `data: {...}\\n\\n` event costs one split and one slice. `SseEvents` applies it to a
`Response` body and yields one payload per step, `b"[DONE]"` included.
"""

from __future__ import annotations

from typing import Protocol

from strata.gateway.upstream.errors import ConnectionClosed

MAX_EVENT_BYTES = 16 * 1024**2  # an unterminated event larger than this is a broken stream


class SseSplitter:
    """Feed body bytes in; get the data of every event they complete."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._pending + chunk if self._pending else chunk
        held = b""
        if b"\r" in data:
            if data.endswith(b"\r"):  # maybe half of a \r\n: decide on the next read
                data, held = data[:-1], b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *blocks, rest = data.split(b"\n\n")
        if len(rest) > MAX_EVENT_BYTES:
            raise ConnectionClosed("an event in the stream is over the size limit")
        self._pending = rest + held
        return [payload for block in blocks if (payload := _payload(block)) is not None]

    def close(self) -> list[bytes]:
        """The data of a last event the stream ended without a blank line after."""
        rest, self._pending = self._pending, b""
        payload = _payload(rest.replace(b"\r", b"\n"))
        return [] if payload is None else [payload]


def _payload(block: bytes) -> bytes | None:
    if block.startswith(b"data: ") and b"\n" not in block:
        return block[6:]  # the common case: one data line
    values = [value for line in block.split(b"\n") if (value := _data(line)) is not None]
    return b"\n".join(values) if values else None


def _data(line: bytes) -> bytes | None:
    name, _, value = line.partition(b":")
    if name != b"data":
        return None  # comments (empty name), other fields, blank lines
    return value[1:] if value.startswith(b" ") else value


class ByteStream(Protocol):
    def __aiter__(self) -> ByteStream: ...

    async def __anext__(self) -> bytes: ...

    async def aclose(self) -> None: ...


class SseEvents:
    """The data payloads of an SSE body, one per `__anext__`. Raises what the body raises."""

    def __init__(self, body: ByteStream) -> None:
        self._body = body
        self._splitter = SseSplitter()
        self._ready: list[bytes] = []
        self._next = 0
        self._ended = False

    def __aiter__(self) -> SseEvents:
        return self

    async def __anext__(self) -> bytes:
        while self._next == len(self._ready):
            if self._ended:
                raise StopAsyncIteration
            await self._pull()
        payload = self._ready[self._next]
        self._next += 1
        return payload

    async def aclose(self) -> None:
        await self._body.aclose()

    async def _pull(self) -> None:
        try:
            chunk = await self._body.__anext__()
        except StopAsyncIteration:
            self._ended = True
            self._ready, self._next = self._splitter.close(), 0
            return
        self._ready, self._next = self._splitter.feed(chunk), 0
