"""The CDC source end to end against a real primary with logical replication."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from strata.pipeline.embedder import MiniLMEmbedder
from strata.pipeline.errors import EmbeddingError, SourceError
from strata.pipeline.primary import RowReader, slot_status
from tests.pipeline.conftest import TICKETS_DDL, run_sql
from tests.pipeline.support import assert_index_matches, drain, index_view

SENTENCES = [
    "My invoice shows the wrong amount.",
    "I was charged twice this month.",
    "The export to CSV never finishes.",
    "Password reset emails do not arrive.",
    "The dashboard is slow after the update.",
]


def _ticket(i: int) -> tuple[Any, ...]:
    body = " ".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(3))
    return (i, f"org{i % 3}", f"Ticket {i}", body, "open", i % 5)


def _insert(dsn: str, ids: Sequence[int]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO tickets VALUES (%s, %s, %s, %s, %s, %s)", [_ticket(i) for i in ids]
        )


def test_snapshot_hand_off_has_no_gap_and_no_double(
    make_pipeline: Any, primary_dsn: str, store_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_sql(primary_dsn, TICKETS_DDL)
    _insert(primary_dsn, range(1, 21))
    original = RowReader.snapshot

    def writes_after_slot(reader: RowReader, snapshot: str) -> Any:
        # The slot exists and its snapshot is exported: these commits must come by stream only.
        _insert(primary_dsn, range(21, 26))
        run_sql(primary_dsn, "UPDATE tickets SET body = 'Completely new text.' WHERE id = 1")
        run_sql(primary_dsn, "DELETE FROM tickets WHERE id = 2")
        return original(reader, snapshot)

    monkeypatch.setattr(RowReader, "snapshot", writes_after_slot)
    pipeline = make_pipeline()
    result = pipeline.backfill(progress=False)
    assert result.rows == 20  # the snapshot: before the three commits
    assert "21" not in index_view(store_dsn) and "2" in index_view(store_dsn)
    pipeline.start()
    stats = drain(pipeline, 3)
    assert [s.upserts for s in stats] == [5, 1, 0] and stats[2].removes == 1
    assert pipeline.step(0.5) is None  # nothing twice
    assert_index_matches(pipeline, primary_dsn, store_dsn)


def test_every_change_kind(make_pipeline: Any, primary_dsn: str, store_dsn: str) -> None:
    run_sql(primary_dsn, TICKETS_DDL)
    pipeline = make_pipeline()
    pipeline.start()  # backfills the empty table first
    _insert(primary_dsn, [1, 2, 3])
    run_sql(primary_dsn, "UPDATE tickets SET body = body || ' Also the app crashes.' WHERE id = 1")
    run_sql(primary_dsn, "UPDATE tickets SET status = 'closed', org = 'initech' WHERE id = 2")
    run_sql(primary_dsn, "DELETE FROM tickets WHERE id = 3")
    run_sql(primary_dsn, "UPDATE tickets SET id = 10 WHERE id = 1")  # the key itself changes
    inserted, text_edit, non_text, deleted, rekeyed = drain(pipeline, 5)
    assert inserted.upserts == 3 and inserted.embedded >= 3
    assert text_edit.embedded == 1 and text_edit.metadata_only == 0
    assert non_text.embedded == 0 and non_text.metadata_only == 1
    assert deleted.removes == 1 and rekeyed.removes == 1 and rekeyed.upserts == 1
    assert rekeyed.embedded == 0  # same text under a new key: its vectors move with it
    assert_index_matches(pipeline, primary_dsn, store_dsn)
    assert index_view(store_dsn)["2"][0] == "initech"
    run_sql(primary_dsn, "TRUNCATE tickets")
    (truncated,) = drain(pipeline, 1)
    assert truncated.truncates == 1 and index_view(store_dsn) == {}


def test_unchanged_toast_values(make_pipeline: Any, primary_dsn: str, store_dsn: str) -> None:
    run_sql(primary_dsn, TICKETS_DDL, "ALTER TABLE tickets ALTER body SET STORAGE EXTERNAL")
    long_body = " ".join(
        f"Step {i}: the sync job failed again with code {i * 7}." for i in range(200)
    )
    run_sql(
        primary_dsn,
        "INSERT INTO tickets VALUES (1, 'acme', 'Sync', %s, 'open', 1)",
        params=(long_body,),
    )
    pipeline = make_pipeline()
    pipeline.start()
    run_sql(primary_dsn, "UPDATE tickets SET status = 'pending' WHERE id = 1")  # body not sent
    (non_text,) = drain(pipeline, 1)
    assert non_text.metadata_only == 1 and non_text.embedded == 0
    run_sql(primary_dsn, "UPDATE tickets SET title = 'Sync broken' WHERE id = 1")  # body not sent
    (title_edit,) = drain(pipeline, 1)
    assert 1 <= title_edit.embedded <= 2 and title_edit.reused > 10  # body re-read, reused
    assert_index_matches(pipeline, primary_dsn, store_dsn)


def test_table_without_usable_replica_identity_is_refused(
    make_pipeline: Any, primary_dsn: str, store_dsn: str
) -> None:
    run_sql(primary_dsn, "CREATE TABLE notes (note_id int NOT NULL, org text, body text)")
    overrides = {
        "table": "notes",
        "text_columns": ["body"],
        "metadata_columns": [],
        "primary_key": ["note_id"],
    }
    with pytest.raises(SourceError, match="REPLICA IDENTITY FULL"):
        make_pipeline(**overrides)
    run_sql(
        primary_dsn,
        "ALTER TABLE notes REPLICA IDENTITY FULL",
        "INSERT INTO notes VALUES (1, 'acme', 'Hello there.')",
    )
    pipeline = make_pipeline(**overrides)
    pipeline.start()
    run_sql(primary_dsn, "DELETE FROM notes WHERE note_id = 1")
    (deleted,) = drain(pipeline, 1)
    assert deleted.removes == 1 and index_view(store_dsn) == {}
    with pytest.raises(SourceError, match="has no primary key"):
        make_pipeline(**{**overrides, "primary_key": []})


def test_slot_confirmed_only_after_index_write(
    make_pipeline: Any, primary_dsn: str, store_dsn: str
) -> None:
    run_sql(primary_dsn, TICKETS_DDL)
    pipeline = make_pipeline()
    pipeline.start()
    _insert(primary_dsn, [1])
    stream = pipeline._stream
    assert stream is not None
    transaction = stream.next_transaction(10.0)
    assert transaction is not None
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        before = slot_status(conn, pipeline.slot)
        assert before is not None and before.confirmed_lsn is not None
        assert before.confirmed_lsn < transaction.end_lsn and before.lag_bytes is not None
        pipeline.apply([transaction])
        assert pipeline.store.state().applied_lsn == transaction.end_lsn
        deadline = time.monotonic() + 5.0  # the walsender takes the feedback asynchronously
        while (
            after := slot_status(conn, pipeline.slot)
        ) is not None and time.monotonic() < deadline:
            if after.confirmed_lsn == transaction.end_lsn:
                break
            time.sleep(0.05)
    assert after is not None and after.confirmed_lsn == transaction.end_lsn


class _Poisoned:
    """The real embedder, failing for texts that contain POISON while `sick` is set."""

    def __init__(self, inner: MiniLMEmbedder) -> None:
        self.inner, self.model, self.dims, self.sick = inner, inner.model, inner.dims, True

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        if self.sick and any("POISON" in t for t in texts):
            raise EmbeddingError("model rejected the text")
        return self.inner.embed_sync(texts)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_sync(texts)


def test_failed_rows_go_to_dead_letters_and_are_retried(
    make_pipeline: Any, primary_dsn: str, store_dsn: str, minilm: MiniLMEmbedder
) -> None:
    run_sql(primary_dsn, TICKETS_DDL)
    pipeline = make_pipeline()
    poisoned = _Poisoned(minilm)
    pipeline.indexer.embedder = poisoned
    pipeline.start()
    run_sql(
        primary_dsn,
        "INSERT INTO tickets VALUES (1, 'acme', 'ok', 'Fine text.'), "
        "(2, 'acme', 'bad', 'POISON text.'), (3, 'acme', 'ok', 'Also fine.')",
    )
    (stats,) = drain(pipeline, 1)
    assert stats.upserts == 2 and stats.failures == 1
    assert sorted(index_view(store_dsn)) == ["1", "3"]
    with psycopg.connect(store_dsn) as conn:
        letters = conn.execute("SELECT key, error FROM pipeline_dead_letters").fetchall()
    assert letters == [("2", "EmbeddingError: model rejected the text")]
    poisoned.sick = False
    with psycopg.connect(store_dsn, autocommit=True) as conn:  # an idle moment may already have
        conn.execute("UPDATE pipeline_dead_letters SET next_attempt_at = now()")  # retried it
    retried = pipeline.retry_dead_letters()
    assert retried.upserts == 1 and retried.failures == 0
    assert_index_matches(pipeline, primary_dsn, store_dsn)
    with psycopg.connect(store_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM pipeline_dead_letters").fetchone() == (0,)


def test_row_filter(make_pipeline: Any, primary_dsn: str, store_dsn: str) -> None:
    run_sql(primary_dsn, TICKETS_DDL)
    _insert(primary_dsn, [1, 2])
    run_sql(primary_dsn, "UPDATE tickets SET status = 'spam' WHERE id = 2")
    pipeline = make_pipeline(row_filter="status <> 'spam'")
    pipeline.start()
    assert sorted(index_view(store_dsn)) == ["1"]
    run_sql(primary_dsn, "UPDATE tickets SET status = 'spam' WHERE id = 1")
    run_sql(primary_dsn, "UPDATE tickets SET status = 'open' WHERE id = 2")
    drain(pipeline, 2)
    assert_index_matches(pipeline, primary_dsn, store_dsn, where="status <> 'spam'")
    assert sorted(index_view(store_dsn)) == ["2"]


def test_waiting_transactions_are_applied_as_one_write(
    make_pipeline: Any, primary_dsn: str, store_dsn: str
) -> None:
    run_sql(primary_dsn, TICKETS_DDL)
    pipeline = make_pipeline(group_transactions=3)
    pipeline.start()
    _insert(primary_dsn, [1])
    run_sql(primary_dsn, "UPDATE tickets SET status = 'closed' WHERE id = 1")
    _insert(primary_dsn, [2])
    _insert(primary_dsn, [3])  # the fourth and fifth: beyond the group, left for the next step
    _insert(primary_dsn, [4])
    time.sleep(0.5)  # every transaction is in the stream before the first step
    first = pipeline.step(10.0)
    assert first is not None and first.upserts == 2  # row 1 (twice, collapsed) and row 2 ...
    assert first.embedded_by_key == {"1": 1, "2": 1}  # ... in one embedding batch
    assert _freshness_samples(store_dsn) == 3  # one sample per transaction, not per write
    first_lsn = pipeline.store.state().applied_lsn
    second = drain(pipeline, 1)[0]
    assert second.upserts == 2 and _freshness_samples(store_dsn) == 5
    assert pipeline.store.state().applied_lsn > first_lsn  # the first write stopped at its group
    assert_index_matches(pipeline, primary_dsn, store_dsn)


def _freshness_samples(store_dsn: str) -> int:
    with psycopg.connect(store_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pipeline_freshness").fetchone()
    assert row is not None
    return int(row[0])
