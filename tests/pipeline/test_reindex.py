"""`strata pipeline reindex`: new vectors beside the old, one switch, old dropped; killed midway
the old index keeps serving; the stream may run meanwhile."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from strata.pipeline.embedder import Embedder, MiniLMEmbedder
from strata.pipeline.errors import PipelineError
from strata.pipeline.index import vector_text
from strata.pipeline.reindex import Reindexer, ReindexResult
from tests.pipeline.conftest import TICKETS_DDL, run_sql
from tests.pipeline.support import (
    HashEmbedder,
    HookedEmbedder,
    assert_index_matches,
    chunk_models,
    search_keys,
    settle,
)

QUERY = "refund the invoice"
BODIES = [
    "Please refund the invoice, it was charged twice.",
    "The export to CSV never finishes.",
    "Password reset emails do not arrive.",
    "The dashboard is slow after the update.",
]
Rows = dict[tuple[str, int], tuple[str, str]]  # (key, chunk_no) -> (content, vector text)


class Killed(BaseException):
    """Stands in for SIGKILL / Ctrl-C: no `except Exception` handler catches it."""


def _tickets(primary_dsn: str, ids: Sequence[int]) -> None:
    with psycopg.connect(primary_dsn, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO tickets VALUES (%s, %s, %s, %s, 'open', 1)",
            [(i, "acme" if i % 2 else "globex", f"Ticket {i}", BODIES[i // 2 % 4]) for i in ids],
        )


def _rows(store_dsn: str, model: str) -> Rows:
    """Every chunk of `model`: its text and its vector, exactly as stored."""
    with psycopg.connect(store_dsn) as conn:
        rows = conn.execute(
            "SELECT key, chunk_no, content, embedding::text FROM pipeline_chunks "
            "WHERE source = 'tickets' AND model = %s",
            (model,),
        ).fetchall()
    return {(key, number): (content, vector) for key, number, content, vector in rows}


def _served(store_dsn: str) -> str:
    with psycopg.connect(store_dsn) as conn:
        row = conn.execute("SELECT model FROM pipeline_sources WHERE name = 'tickets'").fetchone()
    assert row is not None
    return str(row[0])


def _reindex(store_dsn: str, embedder: Embedder, batch_chunks: int = 2) -> ReindexResult:
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        reindexer = Reindexer(conn, "tickets", embedder, batch_chunks=batch_chunks)
        return reindexer.run(progress=False)


@pytest.fixture
def indexed(make_pipeline: Any, primary_dsn: str) -> Any:
    """Eight tickets (acme: odd ids) indexed with MiniLM; the pipeline, still streaming."""
    run_sql(primary_dsn, TICKETS_DDL)
    _tickets(primary_dsn, range(1, 9))
    pipeline = make_pipeline()
    pipeline.start()
    return pipeline


def test_reindex_builds_beside_the_old_index_switches_then_drops_it(
    indexed: Any,
    pipeline_with: Any,
    primary_dsn: str,
    store_dsn: str,
    minilm: MiniLMEmbedder,
) -> None:
    old = _rows(store_dsn, minilm.model)
    before = search_keys(store_dsn, minilm, "acme", QUERY)
    assert before and before[0] == "1"
    new = HashEmbedder()
    midway: dict[str, Any] = {}

    def look(call: int) -> None:
        if call == 2:  # the first batch of twins is committed, the switch is not
            midway["models"] = chunk_models(store_dsn)
            midway["old"] = search_keys(store_dsn, minilm, "acme", QUERY)
            midway["new"] = search_keys(store_dsn, new, "acme", QUERY)

    result = _reindex(store_dsn, HookedEmbedder(new, look))
    assert midway["models"] == {minilm.model: len(old), new.model: 2}
    assert midway["old"] == before  # the old index kept serving, whole
    assert midway["new"] == []  # half-built twins are never served
    assert result.switched and result.old_model == minilm.model
    assert (result.embedded, result.already_built, result.dropped) == (len(old), 0, len(old))
    assert chunk_models(store_dsn) == {new.model: len(old)} and _served(store_dsn) == new.model
    assert {k: text for k, (text, _) in _rows(store_dsn, new.model).items()} == {
        k: text for k, (text, _) in old.items()
    }
    acme = search_keys(store_dsn, new, "acme", QUERY)
    assert acme[0] == "1" and set(acme) == {"1", "3", "5", "7"}
    assert search_keys(store_dsn, minilm, "acme", QUERY) == []
    assert_index_matches(indexed, primary_dsn, store_dsn)  # tenants, metadata, texts kept

    # The process still embedding with MiniLM stops at its next write; nothing is lost.
    run_sql(primary_dsn, "UPDATE tickets SET body = 'Refund it now.' WHERE id = 1")
    with pytest.raises(PipelineError, match="switched to test/word-hash-64"):
        indexed.step(10.0)
    indexed.close()
    restarted = pipeline_with(new)
    restarted.start()
    settle(restarted)
    assert_index_matches(restarted, primary_dsn, store_dsn)
    assert chunk_models(store_dsn) == {new.model: len(old)}


def test_a_killed_reindex_leaves_the_old_index_serving_and_a_rerun_resumes(
    indexed: Any, primary_dsn: str, store_dsn: str, minilm: MiniLMEmbedder
) -> None:
    old = _rows(store_dsn, minilm.model)
    before = search_keys(store_dsn, minilm, "acme", QUERY)
    new = HashEmbedder()

    def kill(call: int) -> None:
        if call == 3:
            raise Killed

    with pytest.raises(Killed):
        _reindex(store_dsn, HookedEmbedder(new, kill))
    assert _rows(store_dsn, minilm.model) == old  # every old vector, untouched
    assert chunk_models(store_dsn)[new.model] == 4 and _served(store_dsn) == minilm.model
    assert search_keys(store_dsn, minilm, "acme", QUERY) == before
    assert search_keys(store_dsn, new, "acme", QUERY) == []

    # The stream keeps the old index fresh in between (and drops the changed row's twin).
    run_sql(primary_dsn, "UPDATE tickets SET title = 'Refund twice' WHERE id = 1")
    settle(indexed)
    left = chunk_models(store_dsn)[new.model]
    assert left == 3
    result = _reindex(store_dsn, new)
    assert (result.already_built, result.embedded) == (left, len(old) - left)
    assert chunk_models(store_dsn) == {new.model: len(old)}
    assert_index_matches(indexed, primary_dsn, store_dsn)


def test_changes_streamed_during_a_reindex_reach_the_new_index(
    indexed: Any, primary_dsn: str, store_dsn: str, minilm: MiniLMEmbedder
) -> None:
    new = HashEmbedder()

    def stream(call: int) -> None:
        if call == 1:  # ticket 1 is in this batch: its text changes under it
            run_sql(primary_dsn, "UPDATE tickets SET body = 'A brand new text.' WHERE id = 1")
            run_sql(primary_dsn, "DELETE FROM tickets WHERE id = 2")
            _tickets(primary_dsn, [99])
            settle(indexed)

    result = _reindex(store_dsn, HookedEmbedder(new, stream))
    assert result.switched
    assert set(chunk_models(store_dsn)) == {new.model}
    assert_index_matches(indexed, primary_dsn, store_dsn)
    ((text, vector),) = [v for (key, _), v in _rows(store_dsn, new.model).items() if key == "1"]
    assert "brand new" in text and vector == vector_text(new.embed_sync([text])[0])


def test_a_model_change_points_to_reindex_and_a_rerun_cleans_up(
    indexed: Any, pipeline_with: Any, store_dsn: str, minilm: MiniLMEmbedder
) -> None:
    with pytest.raises(PipelineError, match="strata pipeline reindex --source tickets"):
        pipeline_with(HashEmbedder()).needs_backfill()

    def kill(call: int) -> None:
        if call == 2:
            raise Killed

    with pytest.raises(Killed):
        _reindex(store_dsn, HookedEmbedder(HashEmbedder(), kill))
    old = len(_rows(store_dsn, minilm.model))
    # Abandoned: reindexing to the model already served only drops the orphaned twins.
    result = _reindex(store_dsn, minilm)
    assert not result.switched and (result.embedded, result.dropped) == (0, 2)
    assert chunk_models(store_dsn) == {minilm.model: old}


def test_reindex_refuses_a_source_without_a_complete_index(store_dsn: str) -> None:
    with pytest.raises(PipelineError, match="strata pipeline backfill --source tickets"):
        _reindex(store_dsn, HashEmbedder())
    run_sql(store_dsn, "INSERT INTO pipeline_sources (name, slot_name, model) VALUES "
                       "('tickets', 'strata_tickets', 'm')")  # fmt: skip
    with pytest.raises(PipelineError, match="no finished backfill"):
        _reindex(store_dsn, HashEmbedder())
