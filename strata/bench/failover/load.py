"""Closed-loop clients and the outcome of every request they sent."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

import httpx
import orjson

from strata.bench.failover.cluster import MODEL

Kind = Literal["ok", "failed_before_content", "error_event_after_content", "broken_stream"]


@dataclass(frozen=True)
class Outcome:
    """One request: when it ran (time.monotonic), whether it streamed, how it ended."""

    started: float
    ended: float
    stream: bool
    kind: Kind
    detail: str = ""
    first_content: float | None = None  # streamed: when the first text arrived


def body(stream: bool, max_tokens: int) -> dict[str, object]:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count slowly from one to fifty."}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "stream": stream,
    }


async def client(
    http: httpx.AsyncClient, stream: bool, max_tokens: int, until: float, out: list[Outcome]
) -> None:
    """Send requests one after another until `until`, recording each outcome."""
    while time.monotonic() < until:
        started, seen = time.monotonic(), _FirstContent()
        if stream:
            kind, detail = await _streamed(http, max_tokens, seen)
        else:
            kind, detail = await _plain(http, max_tokens)
        out.append(Outcome(started, time.monotonic(), stream, kind, detail, seen.at))


class _FirstContent:
    at: float | None = None


async def _plain(http: httpx.AsyncClient, max_tokens: int) -> tuple[Kind, str]:
    try:
        reply = await http.post("/v1/chat/completions", json=body(False, max_tokens))
    except httpx.HTTPError as exc:
        return "failed_before_content", type(exc).__name__
    return ("ok", "") if reply.status_code == 200 else ("failed_before_content", reply.text[:200])


async def _streamed(
    http: httpx.AsyncClient, max_tokens: int, seen: _FirstContent
) -> tuple[Kind, str]:
    content = False
    try:
        async with http.stream("POST", "/v1/chat/completions", json=body(True, max_tokens)) as r:
            if r.status_code != 200:
                return "failed_before_content", (await r.aread()).decode()[:200]
            async for line in r.aiter_lines():
                kind = _event(line, content)
                if kind is not None:
                    return kind, ""
                if not content and '"content":"' in line:
                    content, seen.at = True, time.monotonic()
    except httpx.HTTPError as exc:
        return ("broken_stream" if content else "failed_before_content"), type(exc).__name__
    return ("broken_stream" if content else "failed_before_content"), "no [DONE]"


def _event(line: str, content: bool) -> Kind | None:
    """How a stream ends at this line, or None to read on."""
    if line == "data: [DONE]":
        return "ok"
    if line.startswith("data: {") and '"error"' in line and "error" in orjson.loads(line[6:]):
        return "error_event_after_content" if content else "failed_before_content"
    return None


async def out_of_rotation(http: httpx.AsyncClient, name: str, since: float) -> float | None:
    """Seconds from `since` until the gateway reports upstream `name` unavailable."""
    deadline = since + 30
    while time.monotonic() < deadline:
        upstreams = (await http.get("/admin/upstreams")).json()["data"]
        if not next(u for u in upstreams if u["name"] == name)["available"]:
            return time.monotonic() - since
        await asyncio.sleep(0.01)
    return None
