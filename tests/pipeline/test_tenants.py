"""Deleting a tenant's data: exactly its rows go, others stay byte for byte; an excluded tenant
is never indexed (nor embedded) again, even when the exclusion races a write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from strata.errors import InvalidRequestError
from strata.pipeline.errors import EmbeddingError
from strata.pipeline.tenants import EVERY_SOURCE, delete_tenant, exclusions, include_tenant
from tests.pipeline.conftest import TICKETS_DDL, run_sql
from tests.pipeline.support import (
    HashEmbedder,
    assert_index_matches,
    index_view,
    search_keys,
    settle,
)


class _Recording(HashEmbedder):
    """The hash model, remembering every text it was given and failing on POISON."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        self.seen.extend(texts)
        if any("POISON" in text for text in texts):
            raise EmbeddingError("model rejected the text")
        return super().embed_sync(texts)


TICKETS = (
    "INSERT INTO tickets VALUES "
    "(1, 'acme', 'Refund', 'Acme wants a refund for the invoice.'), "
    "(2, 'acme', 'Login', 'Acme cannot log in to the dashboard.'), "
    "(3, 'acme', 'Bad', 'POISON for acme.'), "
    "(5, 'globex', 'Refund', 'Globex wants a refund for the invoice.'), "
    "(6, 'globex', 'Export', 'Globex export never finishes.'), "
    "(7, 'globex', 'Bad', 'POISON for globex.')"
)


def _store(store_dsn: str, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(store_dsn) as conn:
        return conn.execute(query, params).fetchall()


def _vectors(store_dsn: str, tenant: str) -> list[tuple[Any, ...]]:
    return _store(
        store_dsn,
        "SELECT source, key, chunk_no, model, embedding::text FROM pipeline_chunks "
        "WHERE tenant = %s ORDER BY 1, 2, 3",
        (tenant,),
    )


def _delete(store_dsn: str, tenant: str, sources: list[str] | None, exclude: bool) -> Any:
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        return delete_tenant(conn, tenant, sources, exclude=exclude)


@pytest.fixture
def indexed(pipeline_with: Any, primary_dsn: str, store_dsn: str) -> Any:
    """acme and globex tickets indexed (one POISON row each dead-lettered); the pipeline."""
    run_sql(primary_dsn, TICKETS_DDL, TICKETS)
    pipeline = pipeline_with(_Recording())
    pipeline.start()
    return pipeline


def test_delete_removes_exactly_the_tenants_rows(
    indexed: Any, primary_dsn: str, store_dsn: str
) -> None:
    # A letter from before tenants were recorded: found through its (acme) document.
    run_sql(
        store_dsn,
        "INSERT INTO pipeline_dead_letters (source, key, error, next_attempt_at) "
        "VALUES ('tickets', '2', 'old', now())",
    )
    before = index_view(store_dsn)
    globex = {k: v for k, v in before.items() if v[0] == "globex"}
    globex_vectors = _vectors(store_dsn, "globex")
    globex_hits = search_keys(store_dsn, HashEmbedder(), "globex", "refund invoice")
    assert sorted(before) == ["1", "2", "5", "6"] and globex_hits

    deletion = _delete(store_dsn, "acme", None, exclude=False)
    assert (deletion.sources, deletion.documents, deletion.chunks) == (["tickets"], 2, 2)
    assert deletion.dead_letters == 2 and not deletion.excluded  # row 3's, and the old one
    assert index_view(store_dsn) == globex
    assert _vectors(store_dsn, "globex") == globex_vectors and _vectors(store_dsn, "acme") == []
    assert _store(store_dsn, "SELECT key, tenant FROM pipeline_dead_letters") == [("7", "globex")]
    assert search_keys(store_dsn, HashEmbedder(), "acme", "refund invoice") == []
    assert search_keys(store_dsn, HashEmbedder(), "globex", "refund invoice") == globex_hits

    # Not excluded: a row still in the table comes back on its next change, and only that one.
    assert "indexed again on their next change" in deletion.note
    run_sql(primary_dsn, "UPDATE tickets SET status = 'closed' WHERE id = 1")
    settle(indexed)
    assert sorted(index_view(store_dsn)) == ["1", "5", "6"]


def test_an_excluded_tenant_is_never_indexed_or_embedded_again(
    indexed: Any, primary_dsn: str, store_dsn: str
) -> None:
    deletion = _delete(store_dsn, "acme", ["tickets"], exclude=True)
    assert deletion.excluded and "not indexed again" in deletion.note
    embedder: _Recording = indexed.indexer.embedder
    embedder.seen.clear()
    run_sql(
        primary_dsn,
        "UPDATE tickets SET body = 'Acme has a new secret text.' WHERE id = 1",
        "INSERT INTO tickets VALUES (9, 'acme', 'New', 'Acme opens another ticket.')",
        "UPDATE tickets SET org = 'acme' WHERE id = 6",  # globex's row moves to acme
        "INSERT INTO tickets VALUES (10, 'globex', 'New', 'Globex opens a ticket.')",
    )
    settle(indexed)
    assert sorted(index_view(store_dsn)) == ["10", "5"]
    assert not [text for text in embedder.seen if "Acme" in text]  # never sent to the model
    indexed.backfill(progress=False)
    assert sorted(index_view(store_dsn)) == ["10", "5"]
    assert not [text for text in embedder.seen if "Acme" in text]

    with psycopg.connect(store_dsn, autocommit=True) as conn:
        assert [(e.source, e.tenant) for e in exclusions(conn)] == [("tickets", "acme")]
        assert include_tenant(conn, "acme", None) == 1 and exclusions(conn) == []
    indexed.backfill(progress=False)
    assert_index_matches(indexed, primary_dsn, store_dsn, where="id NOT IN (3, 7)")


def test_an_exclusion_committed_after_the_indexer_looked_still_wins(
    indexed: Any, primary_dsn: str, store_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The indexer's early look happens before the exclusion commits (a delete racing the
    # stream); the write, ordered after it by the source lock, must still drop the row.
    monkeypatch.setattr(indexed.store, "excluded_tenants", frozenset)
    _delete(store_dsn, "acme", None, exclude=True)
    run_sql(primary_dsn, "INSERT INTO tickets VALUES (9, 'acme', 'New', 'Acme again.')")
    settle(indexed)
    assert sorted(index_view(store_dsn)) == ["5", "6"]


def test_a_deletion_scoped_to_a_source_leaves_the_others(indexed: Any, store_dsn: str) -> None:
    run_sql(
        store_dsn,
        "INSERT INTO pipeline_sources (name, slot_name) VALUES ('wiki', 'x')",
        "INSERT INTO pipeline_documents (source, key, tenant, collection, epoch) "
        "VALUES ('wiki', 'a', 'acme', 'kb', 0)",
    )
    deletion = _delete(store_dsn, "acme", ["tickets"], exclude=True)
    assert deletion.sources == ["tickets"] and deletion.documents == 2
    assert _store(
        store_dsn, "SELECT source, key FROM pipeline_documents WHERE tenant = 'acme'"
    ) == [("wiki", "a")]
    everywhere = _delete(store_dsn, "acme", None, exclude=True)
    assert (everywhere.sources, everywhere.documents) == (["tickets", "wiki"], 1)
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        assert [e.source for e in exclusions(conn, "acme")] == [EVERY_SOURCE, "tickets"]
        with pytest.raises(InvalidRequestError, match="tenant"):
            delete_tenant(conn, "  ", None, exclude=True)
