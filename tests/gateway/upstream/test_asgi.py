"""The in-process ASGI client against small ASGI apps that misbehave on purpose."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from strata.gateway.upstream.asgi import AsgiClient
from strata.gateway.upstream.errors import ConnectionClosed, DeadlineExceeded
from strata.gateway.upstream.response import HIGH_WATER

CHUNK = b"x" * 65536


class App:
    """Streams `chunks` chunks until told of a disconnect, recording what it saw; `fail_at`
    raises at that chunk."""

    def __init__(self, chunks: int = 3, fail_at: int | None = None, delay_s: float = 0.0) -> None:
        self.chunks = chunks
        self.fail_at = fail_at
        self.delay_s = delay_s
        self.sent = 0
        self.scope: dict[str, Any] = {}
        self.body = b""
        self.disconnected = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scope = scope
        self.body = (await receive())["body"]
        watcher = asyncio.ensure_future(self._watch(receive))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
        for n in range(self.chunks):
            if n == self.fail_at:
                raise RuntimeError("boom")
            await asyncio.sleep(self.delay_s)
            if self.disconnected.is_set():
                return
            await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
            self.sent += 1
        await send({"type": "http.response.body", "body": b""})
        watcher.cancel()

    async def _watch(self, receive: Any) -> None:
        if (await receive())["type"] == "http.disconnect":
            self.disconnected.set()


def soon(seconds: float = 5.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_the_scope_carries_method_path_headers_and_body() -> None:
    app = App(chunks=1)
    client = AsgiClient(app, headers=[("Authorization", "Bearer t")])
    response = await client.request(
        "POST", "/v1/x", body=b"{}", headers=[(b"x-request-id", b"r1")], deadline=soon()
    )
    assert response.status == 200 and response.header(b"x-a") == b"1"
    assert await response.read() == CHUNK
    assert (app.scope["method"], app.scope["path"], app.body) == ("POST", "/v1/x", b"{}")
    assert app.scope["asgi"]["spec_version"] == "2.3"
    headers = dict(app.scope["headers"])
    assert headers[b"authorization"] == b"Bearer t"
    assert headers[b"content-length"] == b"2" and headers[b"x-request-id"] == b"r1"
    await client.aclose()


async def test_a_slow_reader_holds_the_app_back() -> None:
    app = App(chunks=40)
    client = AsgiClient(app)
    response = await client.request("GET", "/", deadline=soon())
    await asyncio.sleep(0.05)
    assert app.sent * len(CHUNK) <= HIGH_WATER + len(CHUNK)
    assert len(await response.read()) == 40 * len(CHUNK)
    await client.aclose()


async def test_an_abandoned_response_disconnects_the_app() -> None:
    app = App(chunks=100, delay_s=0.01)
    client = AsgiClient(app)
    response = await client.request("GET", "/", deadline=soon())
    await response.__anext__()
    await response.aclose()
    await asyncio.wait_for(app.disconnected.wait(), 1.0)
    await client.aclose()
    assert app.sent < 100


async def test_the_deadline_disconnects_the_app() -> None:
    app = App(chunks=100, delay_s=0.05)
    client = AsgiClient(app)
    response = await client.request("GET", "/", deadline=soon(0.2))
    with pytest.raises(DeadlineExceeded):
        await response.read()
    await asyncio.wait_for(app.disconnected.wait(), 1.0)
    await client.aclose()


async def test_an_app_that_fails_breaks_the_response() -> None:
    client = AsgiClient(App(fail_at=1))
    response = await client.request("GET", "/", deadline=soon())
    with pytest.raises(ConnectionClosed, match="RuntimeError"):
        await response.read()
    await client.aclose()


async def test_an_app_that_fails_before_its_head_fails_the_request() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("before the head")

    with pytest.raises(ConnectionClosed, match="RuntimeError"):
        await AsgiClient(app).request("GET", "/", deadline=soon())
