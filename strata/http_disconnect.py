"""Noticing that an HTTP client went away while its answer is still being worked on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

_T = TypeVar("_T")


async def unless_disconnected(request: Request, work: Awaitable[_T]) -> _T | None:
    """Await `work`; if the client disconnects first, cancel it (which aborts whatever it was
    waiting on) and return None. Call only after the request body has been read."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if task in done:
        return task.result()
    await asyncio.gather(task, return_exceptions=True)  # let the cancellation finish
    return None


async def disconnected(request: Request) -> None:
    """Returns once the client has gone (the body has already been read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
