"""Replica time of the self-hosted upstreams in the store, for `strata usage report`.

Every request's share of replica time reaches the usage ledger as its cost; the time no
request used, idle time, belongs to no request. `ReplicaTimeWriter` reads each self-hosted
upstream's replica clock (`strata.engine.accounting`: busy + idle = replica seconds) every
`interval_s`, before a report (`flush`) and at shutdown, and writes one `replica_time` row per
upstream for the interval since the last row: its replica and idle seconds and their cost at
the current price. `replica_time_report` sums the rows of a report's window, so over a window

    sum(ledger costs on the upstream) + idle cost == replica cost   (within rounding)

Only clocks this gateway can read are covered: the built-in engine's. A remote strata engine
exports its own as `strata:engine_idle_seconds_total` on its `/metrics`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from strata.background import stop
from strata.store.database import Pool
from strata.telemetry.replica_cost import ReplicaSource

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 60.0
_INSERT_SQL = """
INSERT INTO replica_time (at, upstream, replica_s, idle_s, replica_cost_usd, idle_cost_usd)
VALUES (%s, %s, %s, %s, %s, %s)
"""


@dataclass(frozen=True)
class _Reading:
    replica_s: float
    idle_s: float


class ReplicaTimeWriter:
    """Writes the self-hosted replicas' time to `replica_time`, one row per interval."""

    def __init__(
        self, pool: Pool, sources: Sequence[ReplicaSource], interval_s: float = FLUSH_INTERVAL_S
    ) -> None:
        self._pool = pool
        self._sources = sources
        self._interval_s = interval_s
        self._last = {s.upstream: _read(s) for s in sources}  # the clocks at the last row
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._sources:
            self._task = asyncio.create_task(self._every_interval())

    async def aclose(self) -> None:
        """Stop, and write the time since the last row."""
        await stop(self._task)
        await self.flush()

    async def flush(self) -> None:
        """Write each upstream's time since its last row; on failure keep it for the next."""
        if not self._sources:
            return
        async with self._lock:
            now = datetime.now(UTC)
            readings = {s.upstream: _read(s) for s in self._sources}
            rows = [self._row(now, s, readings[s.upstream]) for s in self._sources]
            try:
                async with self._pool.connection() as conn:
                    await conn.cursor().executemany(_INSERT_SQL, rows)
            except (psycopg.Error, OSError) as exc:
                logger.warning("replica time not written (retried next interval): %s", exc)
                return
            self._last = readings

    def _row(self, now: datetime, source: ReplicaSource, reading: _Reading) -> tuple[Any, ...]:
        last = self._last[source.upstream]
        replica = max(0.0, reading.replica_s - last.replica_s)
        idle = min(replica, max(0.0, reading.idle_s - last.idle_s))
        usd = source.usd_per_s
        return (now, source.upstream, replica, idle, replica * usd, idle * usd)

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.flush()


def _read(source: ReplicaSource) -> _Reading:
    clock = source.clock()
    return _Reading(clock.replica_s, clock.idle_s)


@dataclass(frozen=True)
class ReplicaUsage:
    """One self-hosted upstream's replica time over a report's window."""

    upstream: str
    replica_s: float
    idle_s: float
    replica_cost_usd: float
    idle_cost_usd: float

    @property
    def idle_share(self) -> float:
        return self.idle_s / self.replica_s if self.replica_s else 0.0


_REPORT_SQL = """
SELECT upstream, sum(replica_s), sum(idle_s), sum(replica_cost_usd), sum(idle_cost_usd)
FROM replica_time
WHERE %(since)s::timestamptz IS NULL OR at >= %(since)s
GROUP BY upstream
ORDER BY upstream
"""


async def replica_time_report(pool: Pool, since: datetime | None = None) -> list[ReplicaUsage]:
    """Replica and idle time and cost per self-hosted upstream since `since` (default: all)."""
    async with pool.connection() as conn:
        cursor = await conn.execute(_REPORT_SQL, {"since": since})
        return [
            ReplicaUsage(name, float(replica), float(idle), float(cost), float(idle_cost))
            for name, replica, idle, cost, idle_cost in await cursor.fetchall()
        ]
