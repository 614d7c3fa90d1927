"""Waiting-queue policies: the order in which waiting requests are admitted.

A policy is a small object behind one interface; the scheduler never branches on its name.
`fcfs` and `priority` live here; `fair` (per fairness key, by tokens) in `fair_queue`.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from strata.engine.fair_queue import FairTokenQueue
from strata.engine.request import Request


class WaitingQueue(Protocol):
    def push(self, request: Request) -> None: ...
    def push_front(self, request: Request) -> None:
        """Return a preempted request to the queue ahead of newer arrivals."""
        ...

    def peek(self) -> Request | None: ...
    def pop(self) -> Request: ...
    def remove(self, request: Request) -> None: ...
    def displaced_by_head(self, running: Sequence[Request]) -> Request | None:
        """With the batch full: the running request that should give its slot to the waiting
        head now (preempted and recomputed later), or None to let the head wait."""
        ...

    def __len__(self) -> int: ...
    def __iter__(self) -> Iterator[Request]: ...


class _WaitsForSlots:
    """A policy whose waiting head never displaces a running request."""

    def displaced_by_head(self, running: Sequence[Request]) -> Request | None:
        return None


class FcfsQueue(_WaitsForSlots):
    """First come, first served; preempted requests go back to the front."""

    def __init__(self) -> None:
        self._items: deque[Request] = deque()

    def push(self, request: Request) -> None:
        self._items.append(request)

    def push_front(self, request: Request) -> None:
        self._items.appendleft(request)

    def peek(self) -> Request | None:
        return self._items[0] if self._items else None

    def pop(self) -> Request:
        return self._items.popleft()

    def remove(self, request: Request) -> None:
        self._items.remove(request)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Request]:
        return iter(self._items)


class PriorityQueue(_WaitsForSlots):
    """Lower `priority` first, then earlier arrival; stable for equal keys."""

    def __init__(self) -> None:
        self._items: list[tuple[int, float, int, Request]] = []
        self._seq = 0

    def push(self, request: Request) -> None:
        self._seq += 1
        entry = (request.priority, request.arrival_time, self._seq, request)
        bisect.insort(self._items, entry, key=lambda e: e[:3])

    def push_front(self, request: Request) -> None:
        self.push(request)  # an earlier arrival time already puts it ahead of newer peers

    def peek(self) -> Request | None:
        return self._items[0][3] if self._items else None

    def pop(self) -> Request:
        return self._items.pop(0)[3]

    def remove(self, request: Request) -> None:
        self._items = [e for e in self._items if e[3] is not request]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Request]:
        return (e[3] for e in self._items)


def make_waiting_queue(policy: str) -> WaitingQueue:
    policies: dict[str, Callable[[], WaitingQueue]] = {
        "fcfs": FcfsQueue,
        "priority": PriorityQueue,
        "fair": FairTokenQueue,
    }
    if policy not in policies:
        raise ValueError(f"unknown scheduling policy {policy!r}; use one of {sorted(policies)}")
    return policies[policy]()
