"""Tenant-scoped retrieval: isolation in the query, metadata filters, recall under a filter."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from strata.errors import InvalidRequestError
from strata.pipeline.embedder import MiniLMEmbedder
from strata.pipeline.index import vector_text
from strata.pipeline.retriever import Retriever
from tests.pipeline.conftest import TICKETS_DDL, run_sql
from tests.pipeline.support import drain


async def test_tenant_isolation_and_metadata_filter(
    make_pipeline: Any, primary_dsn: str, store_dsn: str, minilm: MiniLMEmbedder
) -> None:
    run_sql(
        primary_dsn,
        TICKETS_DDL,
        "INSERT INTO tickets VALUES "
        "(1, 'acme', 'Refund', 'Please refund my invoice.', 'open', 1), "
        "(2, 'acme', 'Login', 'I cannot log in to the dashboard.', 'closed', 2), "
        "(3, 'globex', 'Refund', 'We want our money back for the invoice.', 'open', 1)",
    )
    pipeline = make_pipeline()
    pipeline.start()
    async with AsyncConnectionPool(store_dsn, min_size=1, max_size=1) as pool:
        retriever = Retriever(pool, minilm)
        hits = await retriever.search("acme", "support", "refund the invoice", k=5)
        assert [h.key for h in hits] == ["1", "2"] and hits[0].score > hits[1].score
        assert {h.metadata["status"] for h in hits} == {"open", "closed"}
        only_closed = await retriever.search("acme", "support", "refund", 5, {"status": "closed"})
        assert [h.key for h in only_closed] == ["2"]
        assert await retriever.search("acme", "other-collection", "refund", 5) == []
        # A non-text update moves row 1 to globex: acme stops seeing it at once.
        run_sql(primary_dsn, "UPDATE tickets SET org = 'globex' WHERE id = 1")
        (moved,) = drain(pipeline, 1)
        assert moved.embedded == 0
        assert [h.key for h in await retriever.search("acme", "support", "refund", 5)] == ["2"]
        globex = await retriever.search("globex", "support", "refund", 5)
        assert sorted(h.key for h in globex) == ["1", "3"]
        with pytest.raises(InvalidRequestError):
            await retriever.search("acme", "support", "refund", k=0)


def _insert_random_chunks(store_dsn: str, tenants: np.ndarray, vectors: np.ndarray) -> None:
    with psycopg.connect(store_dsn) as conn:
        conn.execute("INSERT INTO pipeline_sources (name, slot_name) VALUES ('bench', 'x')")
        with conn.cursor().copy(
            "COPY pipeline_documents (source, key, tenant, collection, epoch) FROM STDIN"
        ) as copy:
            for i, tenant in enumerate(tenants):
                copy.write_row(("bench", str(i), f"t{tenant}", "kb", 0))
        with conn.cursor().copy(
            "COPY pipeline_chunks (source, key, chunk_no, tenant, collection, content, "
            "content_hash, model, dims, embedding) FROM STDIN"
        ) as copy:
            for i, (tenant, vector) in enumerate(zip(tenants, vectors, strict=True)):
                row = ("bench", str(i), 0, f"t{tenant}", "kb", "", b"", "random", 384)
                copy.write_row((*row, vector_text(vector)))


class _RandomModel:
    model, dims = "random", 384


@pytest.mark.slow
async def test_recall_holds_for_a_small_tenant_under_the_filter(store_dsn: str) -> None:
    rng = np.random.default_rng(0)
    count = 50_000
    vectors = rng.standard_normal((count, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tenants = rng.integers(1, 10, count)
    small = rng.choice(count, 250, replace=False)  # tenant t0 owns 0.5% of the chunks
    tenants[small] = 0
    started = time.monotonic()
    run_sql(store_dsn, "DROP INDEX pipeline_chunks_hnsw_384")  # bulk build is much faster
    _insert_random_chunks(store_dsn, tenants, vectors)
    run_sql(
        store_dsn,
        "SET maintenance_work_mem = '512MB'",
        "CREATE INDEX pipeline_chunks_hnsw_384 ON pipeline_chunks USING hnsw "
        "((embedding::vector(384)) vector_cosine_ops) WHERE dims = 384",
        "ANALYZE pipeline_chunks",
    )
    print(f"loaded and indexed {count} chunks in {time.monotonic() - started:.1f} s")
    async with AsyncConnectionPool(store_dsn, min_size=1, max_size=1) as pool:
        retriever = Retriever(pool, _RandomModel())  # type: ignore[arg-type]
        recalls = []
        for query in rng.standard_normal((20, 384)).astype(np.float32):
            query /= np.linalg.norm(query)
            hits = await retriever.search_vector("t0", "kb", query.tolist(), k=10)
            exact = small[np.argsort(-(vectors[small] @ query))[:10]]
            recalls.append(len({int(h.key) for h in hits} & {int(i) for i in exact}) / 10)
    assert np.mean(recalls) >= 0.95, recalls
