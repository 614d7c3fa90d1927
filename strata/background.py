"""Stopping a background loop (a refresher, a purge, a sampler): an asyncio task that runs until
it is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has stopped; nothing to do for None."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
