"""The engine server's exposure, over real HTTP: every route but `/healthz` refuses a request
without the internal token, whatever else the request carries (a valid or malformed body, a
stream, the token somewhere other than `Authorization: Bearer`), and a refused request
generates nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import iter_route_contexts

from strata.engine.server import build_engine_app
from tests.support.live_server import MODEL, TOKEN, LiveServer, make_engine

CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
BODIES: list[Any] = [
    CHAT,
    {**CHAT, "stream": True},
    {"model": MODEL, "prompt": "hi", "max_tokens": 4, "ignore_eos": True},
    {"messages": "not a list", "max_tokens": -1},
    b"{not json",
    b"",
]
NO_TOKEN: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer wrong"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},  # a prefix
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": TOKEN},  # no scheme
    {"Authorization": f"Basic {TOKEN}"},
    {"X-Api-Key": TOKEN},
    {"Api-Key": TOKEN},
    {"Cookie": f"token={TOKEN}"},
]


@pytest.fixture(scope="module")
def live(tiny_llama_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    engine = make_engine(tiny_llama_folder, tmp_path_factory.mktemp("cache"))
    with LiveServer(engine) as server:
        yield server


def _routes(live: LiveServer) -> list[tuple[str, str]]:
    """(method, path) of every route the engine app serves."""
    app = build_engine_app(live.engine, TOKEN, manage_engine=False)
    return [
        (method, route.path)
        for route in iter_route_contexts(app.routes)  # the included router's routes too
        if route.path is not None and route.methods
        for method in sorted(route.methods - {"HEAD"})
    ]


def _send(live: LiveServer, method: str, path: str, headers: dict[str, str], body: Any) -> int:
    content = body if isinstance(body, bytes) else None
    data = None if isinstance(body, bytes) else body
    reply = httpx.request(method, f"{live.url}{path}", headers=headers, json=data,
                          content=content, params={"api_key": TOKEN}, timeout=30)  # fmt: skip
    return reply.status_code


def test_every_route_but_healthz_refuses_without_the_token(live: LiveServer) -> None:
    routes = _routes(live)
    paths = {path for _, path in routes}
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models", "/metrics"} <= paths
    before = live.engine.stats().generation_tokens
    for method, path in routes:
        if path == "/healthz":
            continue
        for headers in NO_TOKEN:
            for body in BODIES if method == "POST" else [None]:
                status = _send(live, method, path, headers, body)
                assert status == 401, (method, path, headers, body, status)
    live.wait_idle()
    assert live.engine.stats().generation_tokens == before  # nothing was generated


def test_the_token_opens_them_and_healthz_needs_none(live: LiveServer) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(f"{live.url}/healthz").status_code == 200
    assert httpx.get(f"{live.url}/v1/models", headers=auth).status_code == 200
    assert httpx.post(f"{live.url}/v1/chat/completions", json=CHAT, headers=auth).status_code == 200
    assert httpx.get(f"{live.url}/metrics", headers=auth).status_code == 200
    # No schema, docs or other framework pages to read without the token.
    for path in ("/openapi.json", "/docs", "/redoc", "/admin", "/v1/embeddings"):
        assert httpx.get(f"{live.url}{path}").status_code in (401, 404), path
