"""Call an ASGI app in this process as if over HTTP: no socket, no serialization of the answer.

`AsgiClient.request()` builds the HTTP scope, runs the app as a task and returns the same
`Response` the HTTP client returns, once the app has sent `http.response.start`. The request body
is handed over in one `http.request` message; after that `receive()` waits until the response
is abandoned or its deadline passes and then says `http.disconnect`, which is how an app such as
the engine server learns that its client went away and aborts the generation.

The scope says ASGI spec 2.3, under which Starlette's streaming responses listen for that
disconnect while they wait for the next chunk (2.4 would only notice on the next send).
The app's sends wait while more than `response.HIGH_WATER` bytes are unread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message

from strata.gateway.upstream.errors import ConnectionClosed, DeadlineExceeded
from strata.gateway.upstream.response import Response

logger = logging.getLogger(__name__)

_ASGI = {"version": "3.0", "spec_version": "2.3"}
_DISCONNECT: Message = {"type": "http.disconnect"}


class AsgiClient:
    """Requests to one ASGI app; `headers` are sent with every request."""

    def __init__(self, app: ASGIApp, *, headers: Sequence[tuple[str, str]] = ()) -> None:
        self._app = app
        self._headers = [(name.lower().encode(), value.encode()) for name, value in headers]
        self._running: set[asyncio.Task[None]] = set()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: Sequence[tuple[bytes, bytes]] = (),
        deadline: float,
    ) -> Response:
        """Like `HttpClient.request`: returns once the app has started its response."""
        exchange = _Exchange(self._app, self._scope(method, path, len(body), headers), body)
        task = exchange.start(deadline)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        try:
            await exchange.response.wait_head()
        except BaseException:
            await exchange.response.aclose()
            raise
        return exchange.response

    async def aclose(self) -> None:
        """Wait for apps still finishing (abandoned exchanges are already disconnected)."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=5.0)

    def _scope(
        self, method: str, path: str, length: int, extra: Sequence[tuple[bytes, bytes]]
    ) -> dict[str, Any]:
        headers = [*self._headers, (b"content-length", b"%d" % length), *extra]
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 0),
            "server": ("in-process", 0),
        }


class _Exchange:
    """One request to the app; the `ResponseOwner` of its response."""

    def __init__(self, app: ASGIApp, scope: dict[str, Any], body: bytes) -> None:
        self._app = app
        self._scope = scope
        self._body: bytes | None = body
        self._loop = asyncio.get_running_loop()
        self.response = Response(self, self._loop)
        self._gone = asyncio.Event()  # not a bare future: a cancelled receive() would cancel it
        self._drained = asyncio.Event()  # cleared while the reader is behind
        self._drained.set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, deadline: float) -> asyncio.Task[None]:
        self._timer = self._loop.call_at(deadline, self._expire)
        return self._loop.create_task(self._run())

    async def _run(self) -> None:
        try:
            await self._app(self._scope, self._receive, self._send)
        except Exception as exc:
            logger.debug("in-process app failed", exc_info=True)
            self.response.on_error(ConnectionClosed(f"the app failed: {type(exc).__name__}"))
            return
        if not self.response.complete:
            self.response.on_error(ConnectionClosed("the app ended without a complete answer"))

    async def _receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._gone.wait()
        return _DISCONNECT

    async def _send(self, message: Message) -> None:
        if self._gone.is_set():
            return  # spec 2.3: sends after a disconnect are ignored
        if message["type"] == "http.response.start":
            self.response.headers.extend(message.get("headers", ()))
            self.response.on_head(message["status"])
        elif message["type"] == "http.response.body":
            self._body_message(message)
            if not self._drained.is_set():
                await self._drained.wait()

    def _body_message(self, message: Message) -> None:
        data = message.get("body", b"")
        if data:
            self.response.on_body(bytes(data))
        if not message.get("more_body", False):
            self.response.on_end()

    # -- ResponseOwner ---------------------------------------------------------------------

    def pause(self) -> None:
        self._drained.clear()

    def resume(self) -> None:
        self._drained.set()

    def finished(self, response: Response) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not response.complete:
            self._disconnect()

    def _expire(self) -> None:
        self.response.on_error(DeadlineExceeded("the upstream did not answer within the deadline"))
        self._disconnect()

    def _disconnect(self) -> None:
        self._gone.set()
        self.resume()
