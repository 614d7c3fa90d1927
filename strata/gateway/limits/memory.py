"""Limits kept in this process: exact for one gateway replica, lost when it stops.

Counters live in a dict of small cells, one per (scope kind, scope id, meter), each remembering
which window its count belongs to; a cell from an older window counts as empty. Check-and-take
runs under one lock with no await inside, so concurrent tasks (or threads) cannot interleave
between the check and the take. Cells are reused across windows, so memory grows with the
number of limited scopes, not with traffic. Concurrency slots need no leases here: if the
process dies, its counts die with it. Several replicas need `RedisLimiter` instead.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterable, Sequence

from strata.gateway.limits.meters import Meter
from strata.gateway.limits.plan import plan, refunds, reservation_for, seed_counters
from strata.gateway.limits.rejections import Failure, rejection
from strata.gateway.limits.types import (
    SLOTS_WINDOW,
    Ask,
    Check,
    Clock,
    Reservation,
    SeedEntry,
    Usage,
)
from strata.gateway.principal import Scope

CellKey = tuple[str, str, str]  # (scope kind, scope id, meter name)


class _Cell:
    """One counter: how much of window `window` is used (for a slot gauge: requests in flight)."""

    __slots__ = ("used", "window")

    def __init__(self, window: int, used: int = 0) -> None:
        self.window = window
        self.used = used


class MemoryLimiter:
    """An in-process `Limiter` (see `strata.gateway.limits.types.Limiter` for the contract)."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._cells: dict[CellKey, _Cell] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    async def reserve(self, scopes: Sequence[Scope], ask: Ask) -> Reservation:
        return self.reserve_now(scopes, ask)

    async def settle(self, reservation: Reservation, usage: Usage) -> None:
        self.give_back(reservation, usage)

    async def release(self, reservation: Reservation) -> None:
        self.give_back(reservation, None)

    async def seed(self, entries: Iterable[SeedEntry]) -> None:
        now = self._clock()
        with self._lock:
            for entry in entries:
                self._seed_one(entry, now)

    async def aclose(self) -> None:
        return None

    def reserve_now(self, scopes: Sequence[Scope], ask: Ask) -> Reservation:
        """`reserve` without the coroutine: check and take in one critical section."""
        now = self._clock()
        checks = plan(scopes, ask, now)
        if checks:
            with self._lock:
                self._take(checks, now)
        return reservation_for(str(next(self._ids)), ask, checks)

    def give_back(self, reservation: Reservation, usage: Usage | None) -> None:
        """`settle` (with `usage`) or `release` (None) without the coroutine."""
        with self._lock:
            if not reservation.close():
                return
            for check, amount in refunds(reservation, usage):
                cell = self._cells.get(_key(check.scope.kind, check.scope.id, check.meter))
                if cell is not None and cell.window == check.window:
                    cell.used = max(cell.used - amount, 0)

    def used(self, scope: Scope, meter: Meter) -> int:
        """How much of `meter`'s current window `scope` has used (for tests and metrics)."""
        now = self._clock()
        window = meter.window(now).number if meter.window else SLOTS_WINDOW
        cell = self._cells.get(_key(scope.kind, scope.id, meter))
        return cell.used if cell is not None and cell.window == window else 0

    def _take(self, checks: tuple[Check, ...], now: float) -> None:
        cells = [self._cell(check) for check in checks]
        failures: list[Failure] = [
            (check, cell.used)
            for check, cell in zip(checks, cells, strict=True)
            if cell.used + check.amount > check.limit
        ]
        if failures:
            raise rejection(failures, now)
        for check, cell in zip(checks, cells, strict=True):
            cell.used += check.amount

    def _cell(self, check: Check) -> _Cell:
        """The check's counter, emptied first if it still holds an older window's count."""
        key = _key(check.scope.kind, check.scope.id, check.meter)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = _Cell(check.window)
        elif cell.window != check.window:
            cell.window, cell.used = check.window, 0
        return cell

    def _seed_one(self, entry: SeedEntry, now: float) -> None:
        for meter, value in seed_counters(entry):
            assert meter.window is not None
            window = meter.window(now).number
            key = _key(entry.kind, entry.scope_id, meter)
            cell = self._cells.get(key)
            if cell is None or cell.window != window:  # never overwrite a live count
                self._cells[key] = _Cell(window, value)


def _key(kind: str, scope_id: str, meter: Meter) -> CellKey:
    return (kind, scope_id, meter.name)
