"""The HTTP client against real servers: the mock upstream (uvicorn) and hand-written bytes."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from strata.gateway.upstream.errors import ConnectError, ConnectionClosed, DeadlineExceeded
from strata.gateway.upstream.http_client import HttpClient, Origin, header_line
from tests.gateway.upstream.raw_server import RawServer
from tests.support.mock_upstream import MockUpstream

CHAT = json.dumps({"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]})


def stream_body() -> bytes:
    return json.dumps({"model": "mock-model", "prompt": "hi", "stream": True}).encode()


def soon(seconds: float = 5.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def post_chat(client: HttpClient, deadline_s: float = 5.0) -> tuple[int, bytes]:
    response = await client.request(
        "POST", "/chat/completions", body=CHAT.encode(), deadline=soon(deadline_s)
    )
    return response.status, await response.read()


# -- framing ---------------------------------------------------------------------------------


async def test_a_json_answer_with_content_length(mock: MockUpstream) -> None:
    client = HttpClient(mock.url)
    status, body = await post_chat(client)
    assert status == 200
    assert json.loads(body)["choices"][0]["message"]["content"] == mock.text
    await client.aclose()


async def test_a_chunked_stream_arrives_piece_by_piece(mock: MockUpstream) -> None:
    mock.event_delay_s = 0.01
    client = HttpClient(mock.url)
    response = await client.request("POST", "/completions", body=stream_body(), deadline=soon())
    assert response.status == 200
    assert response.header(b"content-type") == b"text/event-stream"
    chunks = [chunk async for chunk in response]
    assert len(chunks) > 3
    assert b"".join(chunks).endswith(b"data: [DONE]\n\n")
    await client.aclose()


async def test_the_request_head_is_well_formed() -> None:
    async def answer(request: bytes, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        return True

    async with RawServer(answer) as server:
        client = HttpClient(server.url, headers=[("authorization", "Bearer k")])
        extra = header_line("x-request-id", "req-1")
        response = await client.request(
            "POST", "/chat/completions", body=b"{}", headers=extra, deadline=soon()
        )
        assert (response.status, await response.read()) == (204, b"")
        head = server.requests[0].decode()
        lines = head.split("\r\n")
        assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
        port = server.url.split(":")[2].split("/")[0]
        for line in (f"host: 127.0.0.1:{port}", "authorization: Bearer k", "content-length: 2",
                     "x-request-id: req-1"):  # fmt: skip
            assert line in lines
        assert head.endswith("\r\n\r\n{}")
        await client.aclose()


def test_header_lines_refuse_line_breaks() -> None:
    with pytest.raises(ValueError):
        header_line("x-request-id", "a\r\nx-evil: 1")


def test_origins() -> None:
    assert Origin.parse("https://api.example.com/v1/").host_header == "api.example.com"
    assert Origin.parse("https://api.example.com/v1/").port == 443
    assert Origin.parse("http://[::1]:8000/v1").host_header == "[::1]:8000"
    with pytest.raises(ValueError):
        Origin.parse("ftp://example.com")


async def test_a_body_ending_when_the_server_closes() -> None:
    async def answer(request: bytes, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello, ")
        await writer.drain()
        writer.write(b"world")
        return False

    async with RawServer(answer) as server:
        client = HttpClient(server.url)
        response = await client.request("GET", "/models", deadline=soon())
        assert await response.read() == b"hello, world"
        assert client.open_connections == 0  # not reusable
        await client.aclose()


async def test_a_large_body_is_read_whole_through_flow_control() -> None:
    size = 3 * 1024 * 1024

    async def answer(request: bytes, writer: asyncio.StreamWriter, n: int) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        for _ in range(size // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()
        return True

    async with RawServer(answer) as server:
        client = HttpClient(server.url)
        response = await client.request("GET", "/models", deadline=soon())
        first = await response.__anext__()
        await asyncio.sleep(0.05)  # let the producer fill the buffer and pause
        rest = await response.read()
        assert len(first) + len(rest) == size
        await client.aclose()


async def test_malformed_answers_and_truncated_bodies_fail() -> None:
    async def answer(request: bytes, writer: asyncio.StreamWriter, n: int) -> bool:
        if b"/bad" in request:
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345")
        return False

    async with RawServer(answer) as server:
        client = HttpClient(server.url)
        with pytest.raises(ConnectionClosed):
            await client.request("GET", "/bad", deadline=soon())
        response = await client.request("GET", "/short", deadline=soon())
        with pytest.raises(ConnectionClosed):
            await response.read()
        assert client.open_connections == 0
        await client.aclose()


# -- the pool ---------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_connection(mock: MockUpstream) -> None:
    client = HttpClient(mock.url)
    for _ in range(5):
        assert (await post_chat(client))[0] == 200
    assert mock.connections() == 1
    assert client.open_connections == 1
    await client.aclose()


async def test_concurrency_is_bounded_by_max_connections(mock: MockUpstream) -> None:
    mock.stall_s = 0.1
    client = HttpClient(mock.url, max_connections=2)
    results = await asyncio.gather(*(post_chat(client) for _ in range(6)))
    assert [status for status, _ in results] == [200] * 6
    assert mock.max_in_flight <= 2
    assert mock.connections() == 2
    await client.aclose()


async def test_a_caller_waiting_for_a_connection_gives_up_at_its_deadline(
    mock: MockUpstream,
) -> None:
    mock.stall_s = 0.4
    client = HttpClient(mock.url, max_connections=1)
    busy = asyncio.create_task(post_chat(client))
    await asyncio.sleep(0.05)
    with pytest.raises(DeadlineExceeded, match="no free connection"):
        await post_chat(client, deadline_s=0.1)
    assert (await busy)[0] == 200
    assert client.open_connections == 1
    await client.aclose()


async def test_a_pooled_connection_closed_by_the_server_is_resent_on_a_new_one() -> None:
    async def answer_once(request: bytes, writer: asyncio.StreamWriter, n: int) -> bool:
        if n == 0:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        return n == 0  # a second request on the same connection: close without answering

    async with RawServer(answer_once) as server:
        client = HttpClient(server.url)
        for _ in range(3):
            response = await client.request("GET", "/models", deadline=soon())
            assert await response.read() == b"ok"
        assert server.connections == 3
        await client.aclose()


async def test_an_abandoned_body_closes_its_connection_and_the_server_sees_it(
    mock: MockUpstream,
) -> None:
    mock.text = " ".join(["word"] * 100)
    mock.event_delay_s = 0.02
    client = HttpClient(mock.url)
    response = await client.request("POST", "/completions", body=stream_body(), deadline=soon())
    await response.__anext__()
    await response.aclose()
    assert client.open_connections == 0
    await asyncio.to_thread(mock.wait_until, lambda: mock.aborted == 1)
    assert (await post_chat(client))[0] == 200
    assert mock.connections() == 2
    await client.aclose()


# -- failures and deadlines -------------------------------------------------------------------


async def test_nothing_listening_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(ConnectError, match="cannot connect"):
        await post_chat(client)
    assert client.open_connections == 0
    await client.aclose()


async def test_a_connect_that_hangs_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = [socket.socket() for _ in range(3)]  # fill the accept queue
        for filler in fillers:
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
        client = HttpClient(f"http://127.0.0.1:{port}/v1", connect_timeout_s=0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ConnectError, match="timed out"):
            await post_chat(client)
        assert loop.time() - started < 2.0
        for filler in fillers:
            filler.close()
    await client.aclose()


async def test_the_deadline_covers_the_wait_for_the_head(mock: MockUpstream) -> None:
    mock.stall_s = 5.0
    client = HttpClient(mock.url)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(DeadlineExceeded):
        await post_chat(client, deadline_s=0.2)
    assert loop.time() - started < 1.0
    assert client.open_connections == 0
    await client.aclose()


async def test_the_deadline_covers_the_body(mock: MockUpstream) -> None:
    mock.event_delay_s = 0.5
    client = HttpClient(mock.url)
    response = await client.request("POST", "/completions", body=stream_body(), deadline=soon(0.3))
    with pytest.raises(DeadlineExceeded):
        await response.read()
    await client.aclose()


async def test_a_cancelled_request_frees_its_connection(mock: MockUpstream) -> None:
    mock.stall_s = 5.0
    client = HttpClient(mock.url, max_connections=1)
    task = asyncio.create_task(post_chat(client))
    await asyncio.to_thread(mock.wait_until, lambda: mock.count() == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.open_connections == 0
    await asyncio.to_thread(mock.wait_until, lambda: mock.aborted == 1)
    mock.stall_s = 0.0
    assert (await post_chat(client))[0] == 200
    await client.aclose()
