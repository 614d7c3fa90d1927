from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest

from strata.store.batch_writer import BatchWriter, Row
from strata.store.database import Database

COLUMNS = ("id", "note")


async def _table(database: Database) -> None:
    async with database.pool.connection() as conn:
        await conn.execute("CREATE TABLE notes (id uuid PRIMARY KEY, note text NOT NULL)")


async def _rows(notes: list[str]) -> list[Row]:
    return [(uuid.uuid4(), note) for note in notes]


def _writer(database: Database, **kw: Any) -> BatchWriter[str]:
    return BatchWriter(database.pool, "notes", COLUMNS, _rows, flush_interval_s=60, **kw)


async def _notes(database: Database) -> list[str]:
    async with database.pool.connection() as conn:
        cursor = await conn.execute("SELECT note FROM notes ORDER BY note")
        return [row[0] for row in await cursor.fetchall()]


async def test_record_buffers_and_flush_writes_in_batches(pg_database: Database) -> None:
    await _table(pg_database)
    writer = _writer(pg_database, max_batch=2)
    for note in ("a", "b", "c"):
        writer.record(note)
    assert writer.buffered == 3 and await _notes(pg_database) == []
    await writer.flush()
    assert await _notes(pg_database) == ["a", "b", "c"]
    assert (writer.buffered, writer.written) == (0, 3)


async def test_the_background_task_writes_and_close_writes_the_rest(pg_database: Database) -> None:
    await _table(pg_database)
    writer = BatchWriter(pg_database.pool, "notes", COLUMNS, _rows, flush_interval_s=0.02)
    writer.start()
    writer.record("early")
    for _ in range(100):
        if await _notes(pg_database):
            break
        await asyncio.sleep(0.02)
    writer.record("late")
    await writer.aclose()
    assert await _notes(pg_database) == ["early", "late"]


async def test_a_failing_store_is_retried_and_never_raises_into_record(
    pg_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = BatchWriter(pg_database.pool, "notes", COLUMNS, _rows, flush_interval_s=0.02)
    writer.start()
    writer.record("kept")  # the table does not exist yet: every write fails
    await asyncio.sleep(0.2)
    assert writer.buffered == 1 and "write failed" in caplog.text
    await _table(pg_database)
    await writer.aclose()
    assert await _notes(pg_database) == ["kept"]


async def test_a_row_the_database_refuses_is_dropped_alone(pg_database: Database) -> None:
    await _table(pg_database)
    writer = _writer(pg_database)
    for note in ("good", "bad\x00nul", "also good"):
        writer.record(note)
    await writer.flush()
    assert await _notes(pg_database) == ["also good", "good"]
    assert (writer.refused, writer.written, writer.buffered) == (1, 2, 0)


async def test_a_batch_sent_again_is_stored_once(pg_database: Database) -> None:
    await _table(pg_database)
    fixed = [(uuid.uuid4(), "once"), (uuid.uuid4(), "twice")]

    async def same_rows(notes: list[str]) -> list[Row]:
        return fixed

    writer = BatchWriter(pg_database.pool, "notes", COLUMNS, same_rows, flush_interval_s=60)
    async with pg_database.pool.connection() as conn:  # the first row's commit "was lost"
        await conn.execute("INSERT INTO notes VALUES (%s, %s)", fixed[0])
    writer.record("x")
    await writer.flush()
    assert await _notes(pg_database) == ["once", "twice"]


async def test_a_full_buffer_drops_the_oldest_and_says_so(
    pg_database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    await _table(pg_database)
    writer = _writer(pg_database, max_buffered=2)
    for note in ("1", "2", "3"):
        writer.record(note)
    with caplog.at_level(logging.ERROR):
        await writer.aclose()
    assert writer.dropped == 1 and "dropped 1 oldest" in caplog.text
    assert await _notes(pg_database) == ["2", "3"]
