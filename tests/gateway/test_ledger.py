from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from strata.errors import InvalidRequestError
from strata.gateway.ledger import (
    LedgerWriter,
    PeriodUsage,
    UsageRecord,
    _Batch,
    period_starts,
    period_usage,
    row_id,
    usage_report,
)
from strata.store.database import Database

NOW = datetime(2025, 3, 15, 12, 0, tzinfo=UTC)


def _rec(n: int = 0, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "request_id": f"req-{n}",
        "at": NOW,
        "tenant": "acme",
        "user": "alice",
        "key_id": "key000000001",
        "model": "small",
        "upstream": "engine",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": 0.01,
        **fields,
    }
    return UsageRecord(**values)


async def _scalar(database: Database, query: str) -> Any:
    async with database.pool.connection() as conn:
        row = await (await conn.execute(query)).fetchone()
        assert row is not None
        return row[0]


async def _ledger(database: Database, *records: UsageRecord) -> None:
    writer = LedgerWriter(database.pool, flush_interval_s=60)
    for rec in records:
        writer.record(rec)
    await writer.flush()


async def test_record_only_buffers_until_a_flush(pg_database: Database) -> None:
    writer = LedgerWriter(pg_database.pool, flush_interval_s=60)
    for n in range(3):
        writer.record(_rec(n))
    assert writer.buffered == 3
    assert await _scalar(pg_database, "SELECT count(*) FROM usage_ledger") == 0
    await writer.flush()
    assert (writer.buffered, writer.written) == (0, 3)
    assert await _scalar(pg_database, "SELECT count(*) FROM usage_ledger") == 3


async def test_a_row_keeps_every_field(pg_database: Database) -> None:
    rec = _rec(
        7, cached_tokens=4, ttft_ms=12.5, duration_ms=80.25, status=429, error_code="rate_limited"
    )
    await _ledger(pg_database, rec)
    async with pg_database.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT request_id, at, tenant, user_name, key_id, model, upstream, prompt_tokens, "
            "completion_tokens, cached_tokens, ttft_ms, duration_ms, status, error_code, "
            "cost_usd::float8 FROM usage_ledger"
        )
        row = await cursor.fetchone()
    assert row == (
        "req-7", NOW, "acme", "alice", "key000000001", "small", "engine", 10, 5, 4, 12.5,
        80.25, 429, "rate_limited", 0.01,
    )  # fmt: skip


async def test_background_task_writes_in_batches(pg_database: Database) -> None:
    writer = LedgerWriter(pg_database.pool, flush_interval_s=0.05)
    writer.start()
    for n in range(50):
        writer.record(_rec(n))
    for _ in range(100):
        if writer.written == 50:
            break
        await asyncio.sleep(0.02)
    await writer.aclose()
    assert writer.written == 50
    # Rows inserted by one statement share a transaction id: 50 rows, one batch.
    assert await _scalar(pg_database, "SELECT count(DISTINCT xmin::text) FROM usage_ledger") == 1


async def test_close_writes_everything_buffered(pg_database: Database) -> None:
    writer = LedgerWriter(pg_database.pool, flush_interval_s=3600)
    writer.start()
    for n in range(1_000):
        writer.record(_rec(n))
    await writer.aclose()
    assert await _scalar(pg_database, "SELECT count(DISTINCT request_id) FROM usage_ledger") == 1000


async def test_failed_writes_are_retried_and_never_raise(
    pg_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    async with pg_database.pool.connection() as conn:
        await conn.execute("ALTER TABLE usage_ledger RENAME TO usage_ledger_away")
    writer = LedgerWriter(pg_database.pool, flush_interval_s=0.02)
    writer.start()
    writer.record(_rec(1))
    with caplog.at_level(logging.WARNING, logger="strata.gateway.ledger"):
        for _ in range(200):
            if "write failed" in caplog.text:
                break
            await asyncio.sleep(0.01)
    assert "write failed" in caplog.text and writer.buffered == 1
    async with pg_database.pool.connection() as conn:
        await conn.execute("ALTER TABLE usage_ledger_away RENAME TO usage_ledger")
    writer.record(_rec(2))
    await writer.aclose()
    assert await _scalar(pg_database, "SELECT count(*) FROM usage_ledger") == 2


async def test_a_full_buffer_drops_the_oldest_and_says_so(
    pg_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LedgerWriter(pg_database.pool, flush_interval_s=3600, max_buffered=5)
    for n in range(8):
        writer.record(_rec(n))
    assert writer.dropped == 3
    with caplog.at_level(logging.ERROR, logger="strata.gateway.ledger"):
        await writer.aclose()
    assert "dropped 3 oldest" in caplog.text
    ids = await _scalar(
        pg_database, "SELECT array_agg(request_id ORDER BY request_id) FROM usage_ledger"
    )
    assert ids == [f"req-{n}" for n in range(3, 8)]


async def test_report_orders_by_cost_with_shares_of_the_whole(pg_database: Database) -> None:
    await _ledger(
        pg_database,
        _rec(1, user="alice", cost_usd=1.0, prompt_tokens=100, completion_tokens=0),
        _rec(2, user="alice", cost_usd=1.0, prompt_tokens=100, completion_tokens=0),
        _rec(3, user="bob", cost_usd=5.0, prompt_tokens=50, completion_tokens=50),
        _rec(4, user="carol", tenant="globex", cost_usd=3.0, prompt_tokens=0, completion_tokens=0),
        _rec(5, user="dave", cost_usd=0.0, prompt_tokens=700, completion_tokens=0),
    )
    rows = await usage_report(pg_database.pool, "user", top=3)
    assert [r.key for r in rows] == ["acme/bob", "globex/carol", "acme/alice"]
    bob, _, alice = rows
    assert (alice.requests, alice.prompt_tokens, alice.cost_usd) == (2, 200, 2.0)
    assert bob.cost_share == pytest.approx(0.5) and bob.token_share == pytest.approx(0.1)
    tenants = await usage_report(pg_database.pool, "tenant", top=10)
    assert [(r.key, r.cost_usd) for r in tenants] == [("acme", 7.0), ("globex", 3.0)]
    assert sum(r.cost_share for r in tenants) == pytest.approx(1.0)
    models = await usage_report(pg_database.pool, "model", top=10)
    assert [(r.key, r.requests) for r in models] == [("small", 5)]


async def test_report_since_leaves_out_older_rows(pg_database: Database) -> None:
    old = NOW - timedelta(days=10)
    await _ledger(pg_database, _rec(1, at=old, key_id="oldkey000000"), _rec(2, key_id="newkey"))
    rows = await usage_report(pg_database.pool, "key", top=10, since=NOW - timedelta(days=1))
    assert [r.key for r in rows] == ["newkey"] and rows[0].cost_share == 1.0


async def test_report_rejects_an_unknown_grouping(pg_database: Database) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        await usage_report(pg_database.pool, "region", top=10)
    assert caught.value.param == "by"
    assert await usage_report(pg_database.pool, "user", top=5) == []


def test_period_starts_are_utc_midnight_and_first_of_month() -> None:
    day, month = period_starts(datetime(2025, 3, 15, 1, 30, tzinfo=UTC))
    assert day == datetime(2025, 3, 15, tzinfo=UTC) and month == datetime(2025, 3, 1, tzinfo=UTC)


async def test_period_usage_sums_per_key_user_and_tenant(pg_database: Database) -> None:
    day, month = period_starts(NOW)
    earlier = day - timedelta(days=3)  # this month, not today
    await _ledger(
        pg_database,
        _rec(1, key_id="k1", cost_usd=1.0),  # today: 15 tokens
        _rec(2, key_id="k2", user="bob", at=earlier, cost_usd=2.0),
        _rec(3, key_id="k1", at=month - timedelta(seconds=1), cost_usd=100.0),  # last month
        _rec(4, key_id="k3", tenant="globex", user="carol", cost_usd=0.5),
    )
    usage = {(u.kind, u.id): u for u in await period_usage(pg_database.pool, day, month)}
    assert usage[("key", "k1")] == PeriodUsage("key", "k1", 15, 1.0, 15, 1.0)
    assert usage[("key", "k2")] == PeriodUsage("key", "k2", 0, 0.0, 15, 2.0)
    assert usage[("user", "acme/bob")].month_cost_usd == 2.0
    assert usage[("tenant", "acme")] == PeriodUsage("tenant", "acme", 15, 1.0, 30, 3.0)
    assert usage[("tenant", "globex")].day_cost_usd == 0.5
    assert len(usage) == 3 + 3 + 2


async def test_text_that_looks_like_copy_syntax_is_stored_verbatim(pg_database: Database) -> None:
    tricky = "a\tb\nc\\N\\d\r"
    await _ledger(pg_database, _rec(1, request_id=tricky, upstream=None, error_code=tricky))
    async with pg_database.pool.connection() as conn:
        cursor = await conn.execute("SELECT request_id, upstream, error_code FROM usage_ledger")
        assert await cursor.fetchone() == (tricky, None, tricky)


async def test_a_batch_sent_twice_is_stored_once(pg_database: Database) -> None:
    writer = LedgerWriter(pg_database.pool, flush_interval_s=60)
    batch = _Batch.of([_rec(n) for n in range(5)])
    await writer._write(batch)
    await writer._write(batch)  # a retry after a commit whose answer was lost
    assert await _scalar(pg_database, "SELECT count(*) FROM usage_ledger") == 5


async def test_records_arriving_during_a_write_wait_for_the_next_flush(
    pg_database: Database,
) -> None:
    sizes: list[int] = []

    class _Busy(LedgerWriter):
        async def _write(self, batch: _Batch) -> None:
            sizes.append(batch.size)
            self.record(_rec(100 + len(sizes)))  # traffic keeps coming while we write
            await super()._write(batch)

    writer = _Busy(pg_database.pool, flush_interval_s=60)
    for n in range(10):
        writer.record(_rec(n))
    await writer.flush()
    assert sizes == [10] and writer.buffered == 1  # one batch, not a stream of tiny ones


def test_row_ids_are_uuid7_ordered_by_time() -> None:
    earlier = uuid.UUID(row_id(NOW))
    later = uuid.UUID(row_id(NOW + timedelta(milliseconds=1)))
    assert earlier.version == 7 and earlier.variant == uuid.RFC_4122 and earlier < later
    assert row_id(NOW) != row_id(NOW)  # random bits below the millisecond
