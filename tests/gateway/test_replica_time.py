"""Replica time in the store: one row per interval per self-hosted upstream, summed by reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from strata.engine.accounting import ReplicaTime
from strata.gateway.replica_time import ReplicaTimeWriter, replica_time_report
from strata.store.database import Database
from strata.telemetry.replica_cost import ReplicaSource

USD_PER_S = 0.002


class Clock:
    """A replica clock the test moves by hand."""

    def __init__(self) -> None:
        self.time = ReplicaTime(10.0, 8.0, 2.0, 0.0)

    def __call__(self) -> ReplicaTime:
        return self.time

    def advance(self, busy: float, idle: float) -> None:
        t = self.time
        self.time = ReplicaTime(t.replica_s + busy + idle, t.busy_s + busy, t.idle_s + idle, 0.0)


async def test_each_flush_writes_the_time_since_the_last_and_reports_sum_the_window(
    pg_database: Database,
) -> None:
    clock = Clock()  # 10 s before the writer started: not counted
    writer = ReplicaTimeWriter(pg_database.pool, [ReplicaSource("engine", USD_PER_S, clock)])
    clock.advance(busy=6.0, idle=4.0)
    await writer.flush()
    clock.advance(busy=0.0, idle=30.0)
    await writer.aclose()  # never started: still writes the rest

    [usage] = await replica_time_report(pg_database.pool)
    assert (usage.upstream, usage.replica_s, usage.idle_s) == ("engine", 40.0, 34.0)
    assert usage.replica_cost_usd == pytest.approx(40 * USD_PER_S)
    assert usage.idle_cost_usd == pytest.approx(34 * USD_PER_S)
    assert usage.idle_share == pytest.approx(0.85)
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert await replica_time_report(pg_database.pool, since=later) == []


async def test_a_failed_write_is_folded_into_the_next_interval(pg_database: Database) -> None:
    clock = Clock()
    writer = ReplicaTimeWriter(pg_database.pool, [ReplicaSource("engine", USD_PER_S, clock)])
    clock.advance(busy=1.0, idle=1.0)
    async with pg_database.pool.connection() as conn:
        await conn.execute("ALTER TABLE replica_time RENAME TO replica_time_away")
    await writer.flush()  # logged, nothing lost
    async with pg_database.pool.connection() as conn:
        await conn.execute("ALTER TABLE replica_time_away RENAME TO replica_time")
    clock.advance(busy=0.0, idle=2.0)
    await writer.flush()
    [usage] = await replica_time_report(pg_database.pool)
    assert (usage.replica_s, usage.idle_s) == (4.0, 3.0)


async def test_without_self_hosted_upstreams_nothing_is_written(pg_database: Database) -> None:
    writer = ReplicaTimeWriter(pg_database.pool, [])
    writer.start()
    await writer.aclose()
    assert await replica_time_report(pg_database.pool) == []
