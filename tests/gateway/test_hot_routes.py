from __future__ import annotations

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from strata.errors import RateLimitError
from strata.gateway.hot_routes import HotRoutes, read_body


async def _fallback(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    await PlainTextResponse("framework")(scope, receive, send)


async def _echo(request: Request) -> Response:
    return PlainTextResponse((await read_body(request, 10)).decode())


async def _limited(request: Request) -> Response:
    raise RateLimitError("slow down", retry_after_s=3, code="rate_limit_exceeded")


async def _broken(request: Request) -> Response:
    raise RuntimeError("bug")


@pytest.fixture
def client() -> httpx.AsyncClient:
    app = HotRoutes(
        _fallback,
        {("POST", "/echo"): _echo, ("POST", "/limited"): _limited, ("POST", "/broken"): _broken},
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_hot_routes_answer_and_the_rest_falls_through(client: httpx.AsyncClient) -> None:
    assert (await client.post("/echo", content=b"hi")).text == "hi"
    assert (await client.get("/echo")).text == "framework"  # method is part of the route
    assert (await client.post("/other")).text == "framework"


async def test_errors_are_mapped_in_the_one_place(client: httpx.AsyncClient) -> None:
    limited = await client.post("/limited")
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    broken = await client.post("/broken")
    assert broken.status_code == 500 and "bug" not in broken.text


async def test_bodies_past_the_limit_are_413_declared_or_streamed(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/echo", content=b"x" * 11)).status_code == 413

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(3):
            yield b"xxxx"

    assert (await client.post("/echo", content=chunks())).status_code == 413
