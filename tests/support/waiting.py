"""Waiting in async tests for something another task, thread or process makes true: poll it,
with a deadline, instead of sleeping a guessed time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def eventually(condition: Callable[[], object], timeout_s: float = 30.0) -> None:
    """Return once `condition()` is truthy (polled every 5 ms); fail after `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"not true within {timeout_s} s"
        await asyncio.sleep(0.005)
