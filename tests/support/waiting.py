"""Waiting in tests for something another task, thread or process makes true: poll it, with a
deadline, instead of sleeping a guessed time (`eventually` in async tests, `until` in sync ones)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(condition: Callable[[], object], timeout_s: float = 30.0) -> None:
    """Return once `condition()` is truthy (polled every 5 ms); fail after `timeout_s`."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"not true within {timeout_s} s"
        await asyncio.sleep(0.005)


def until(probe: Callable[[], T | None], what: str, timeout_s: float = 10.0) -> T:
    """`probe()`'s first truthy value (polled every 50 ms); TimeoutError(`what`) after
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)
