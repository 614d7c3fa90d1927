"""A small, fast HTTP/1.1 client for one origin: asyncio protocols + `httptools`' parser.

`HttpClient.request()` sends one request on a pooled keep-alive connection and returns the
`Response` as soon as its head has arrived; the body streams from it. What makes it cheap on
the hot path: request heads are bytes built once per (method, path) and completed with a
`%`-format, one `write()` per request, no header dicts, and one timer per call for its whole
deadline (connection wait, head and body).

Connections go back to the pool only when the response was read to its end and both sides
allow keep-alive; a response abandoned mid-body (`aclose()`) closes its connection, which is how
a client that went away stops the upstream's generation. At most `max_connections` are open;
further callers queue in FIFO order until one is returned or closed, or their deadline passes.

This module knows HTTP/1.1 framing and nothing of OpenAI, SSE or routing. No proxies, no
redirects, no request bodies other than bytes.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

from strata.gateway.upstream.errors import (
    ConnectError,
    ConnectionClosed,
    DeadlineExceeded,
    StaleConnection,
    TransportError,
)
from strata.gateway.upstream.response import Response

_FRAMING_HEADERS = (b"content-length", b"transfer-encoding")


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host, port, and the path prefix every request path extends."""

    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


def header_line(name: str, value: str) -> bytes:
    """`name: value\\r\\n`; refuses CR/LF (header injection)."""
    line = f"{name}: {value}"
    if "\r" in line or "\n" in line:
        raise ValueError(f"header {name!r} holds a line break")
    return line.encode("latin-1") + b"\r\n"


class HttpClient:
    """HTTP/1.1 to one origin over a bounded keep-alive pool. One event loop; not thread-safe."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        max_connections: int = 100,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.origin = Origin.parse(base_url)
        self._pool = _Pool(self.origin, max_connections, connect_timeout_s)
        common = [("host", self.origin.host_header), ("user-agent", "strata"), *headers]
        self._common = b"".join(header_line(name, value) for name, value in common)
        self._prefixes: dict[tuple[str, str], bytes] = {}

    async def request(
        self, method: str, path: str, *, body: bytes = b"", headers: bytes = b"", deadline: float
    ) -> Response:
        """Send `method base_path+path`; return once the response head is in.

        `headers` is extra pre-serialized header lines (see `header_line`); `deadline` is a
        `loop.time()` by which the whole exchange, body included, must end. Raises a
        `TransportError`; the caller must `aclose()` (or read to the end) the response.
        """
        message = self._head(method, path, len(body), headers) + body
        try:
            return await self._pool.exchange(message, deadline)
        except StaleConnection:  # the server closed it as we sent: once more on a new one
            return await self._pool.exchange(message, deadline, fresh=True)

    async def aclose(self) -> None:
        """Close idle connections now and busy ones when their responses finish."""
        self._pool.close()

    @property
    def open_connections(self) -> int:
        return self._pool.open

    def _head(self, method: str, path: str, length: int, extra: bytes) -> bytes:
        prefix = self._prefixes.get((method, path))
        if prefix is None:
            line = f"{method} {self.origin.base_path}{path} HTTP/1.1\r\n".encode("latin-1")
            prefix = self._prefixes[(method, path)] = line + self._common
        return b"%scontent-length: %d\r\n%s\r\n" % (prefix, length, extra)


class _Pool:
    """Keep-alive connections to one origin: idle ones (warmest first), the count of open ones,
    and callers waiting for one. A waiter is handed either a connection or `None`, meaning a
    slot was freed for it to open its own."""

    def __init__(self, origin: Origin, max_connections: int, connect_timeout_s: float) -> None:
        self.origin = origin
        self.max = max_connections
        self.connect_timeout_s = connect_timeout_s
        self.open = 0
        self.closed = False
        self._idle: deque[_Connection] = deque()
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._ssl = ssl.create_default_context() if origin.scheme == "https" else None

    async def exchange(self, message: bytes, deadline: float, *, fresh: bool = False) -> Response:
        conn = await self._acquire(deadline, fresh)
        return await conn.exchange(message, deadline)

    def release(self, conn: _Connection, reusable: bool) -> None:
        if not reusable or self.closed:
            conn.close()
            self._free_slot()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def close(self) -> None:
        self.closed = True
        while self._idle:
            self._idle.pop().close()
            self.open -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(ConnectError("the client is closed"))

    async def _acquire(self, deadline: float, fresh: bool) -> _Connection:
        if self.closed:
            raise ConnectError("the client is closed")
        conn = None if fresh else self._pop_idle()
        if conn is not None:
            return conn
        if self.open < self.max:
            self.open += 1
            return await self._connect(deadline)
        handed = await self._wait(deadline)
        return handed if handed is not None else await self._connect(deadline)

    def _pop_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable:
                return conn
            self._free_slot()  # closed by the server while idle
        return None

    def _free_slot(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the waiter
                return
        self.open -= 1

    async def _wait(self, deadline: float) -> _Connection | None:
        waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                return await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back(waiter.result())  # handed over just as we gave up
            if isinstance(exc, TimeoutError):
                raise DeadlineExceeded("no free connection within the deadline") from None
            raise

    def _give_back(self, handed: _Connection | None) -> None:
        if handed is None:
            self._free_slot()
        else:
            self.release(handed, reusable=True)

    async def _connect(self, deadline: float) -> _Connection:
        loop = asyncio.get_running_loop()
        timeout = min(self.connect_timeout_s, deadline - loop.time())
        try:
            _, conn = await asyncio.wait_for(self._open_connection(loop), max(timeout, 0))
        except Exception as exc:
            self._free_slot()
            raise self._connect_error(exc) from exc
        except BaseException:
            self._free_slot()
            raise
        return conn

    async def _open_connection(
        self, loop: asyncio.AbstractEventLoop
    ) -> tuple[asyncio.BaseTransport, _Connection]:
        host, port = self.origin.host, self.origin.port
        server_hostname = host if self._ssl is not None else None
        return await loop.create_connection(
            lambda: _Connection(self, loop), host, port, ssl=self._ssl,
            server_hostname=server_hostname,
        )  # fmt: skip

    @staticmethod
    def _connect_error(exc: Exception) -> TransportError:
        if isinstance(exc, TimeoutError):
            return ConnectError("timed out connecting")
        if isinstance(exc, OSError) and exc.strerror:
            return ConnectError(f"cannot connect: {exc.strerror}")
        return ConnectError(f"cannot connect: {type(exc).__name__}")


class _Connection(asyncio.Protocol):
    """One keep-alive TCP connection: at most one request in flight, its response parsed as
    bytes arrive. Also the `ResponseOwner` of that response."""

    def __init__(self, pool: _Pool, loop: asyncio.AbstractEventLoop) -> None:
        self._pool = pool
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._response: Response | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._lost = False
        self._reused = False
        self._received = False  # any byte of the current response
        self._keep_alive = False
        self._paused = False

    @property
    def usable(self) -> bool:
        return not self._lost and self._transport is not None

    async def exchange(self, message: bytes, deadline: float) -> Response:
        response = self._begin(deadline)
        assert self._transport is not None
        self._transport.write(message)
        try:
            await response.wait_head()
        except BaseException:
            await response.aclose()
            raise
        return response

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _begin(self, deadline: float) -> Response:
        self._response = Response(self, self._loop)
        self._parser = httptools.HttpResponseParser(self)
        self._timer = self._loop.call_at(deadline, self._expire)
        self._received = False
        return self._response

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._fail(ConnectionClosed("malformed HTTP response"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        response = self._response
        if response is None or response.complete:
            return
        if response.status and self._body_ends_at_eof(response):
            response.on_end()
        elif self._reused and not self._received:
            self._fail(StaleConnection("the pooled connection was closed by the server"))
        else:
            self._fail(ConnectionClosed("the connection closed before the answer was complete"))

    # -- httptools callbacks ---------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self._response is not None
        self._response.headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None and self._response is not None
        self._keep_alive = self._parser.should_keep_alive()
        self._response.on_head(self._parser.get_status_code())

    def on_body(self, body: bytes) -> None:
        assert self._response is not None
        self._response.on_body(body)

    def on_message_complete(self) -> None:
        assert self._parser is not None and self._response is not None
        self._keep_alive = self._parser.should_keep_alive()
        self._response.on_end()

    # -- ResponseOwner ---------------------------------------------------------------------

    def pause(self) -> None:
        if self._transport is not None and not self._lost:
            self._paused = True
            self._transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self._transport is not None and not self._lost:
            self._paused = False
            self._transport.resume_reading()

    def finished(self, response: Response) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._parser = self._response = None
        self._reused = True
        self.resume()
        self._pool.release(self, response.complete and self._keep_alive and not self._lost)

    # -- internals -------------------------------------------------------------------------

    def _expire(self) -> None:
        self._fail(DeadlineExceeded("the upstream did not answer within the deadline"))
        self.close()

    def _fail(self, error: TransportError) -> None:
        if self._response is not None:
            self._response.on_error(error)

    @staticmethod
    def _body_ends_at_eof(response: Response) -> bool:
        """A response with neither Content-Length nor chunked framing ends when the server
        closes the connection (httptools has no call for end-of-input)."""
        return not any(name.lower() in _FRAMING_HEADERS for name, _ in response.headers)
