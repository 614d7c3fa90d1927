"""Helpers for pipeline tests: what the index holds vs what the source table says it should."""

from __future__ import annotations

from typing import Any

import psycopg

from strata.pipeline.chunker import Chunker
from strata.pipeline.mapping import Mapper, key_text
from strata.pipeline.source import SourcePipeline

IndexView = dict[str, tuple[str, dict[str, Any], list[str]]]  # key -> (tenant, metadata, chunks)


def index_view(store_dsn: str, source: str = "tickets") -> IndexView:
    """Every indexed document of `source`: tenant, metadata and chunk texts in order."""
    view: IndexView = {}
    with psycopg.connect(store_dsn) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ  # one consistent view
        docs = conn.execute(
            "SELECT key, tenant, metadata FROM pipeline_documents WHERE source = %s", (source,)
        ).fetchall()
        for key, tenant, metadata in docs:
            view[key] = (tenant, metadata, [])
        rows = conn.execute(
            "SELECT key, tenant, metadata, content FROM pipeline_chunks WHERE source = %s "
            "ORDER BY key, chunk_no",
            (source,),
        ).fetchall()
    for key, tenant, metadata, content in rows:
        assert view[key][:2] == (tenant, metadata), f"chunk of {key} disagrees with its document"
        view[key][2].append(content)
    return view


def expected_view(
    primary_dsn: str, mapper: Mapper, chunker: Chunker, where: str = "true"
) -> IndexView:
    """What the index must hold for the source table's current rows, computed independently
    of the stream: read every row, map it, chunk it."""
    columns = ", ".join(f"{c}::text" for c in mapper.columns)
    table = mapper.source.table
    with psycopg.connect(primary_dsn) as conn:
        rows = conn.execute(f"SELECT {columns} FROM {table} WHERE {where}").fetchall()
    view: IndexView = {}
    for values in rows:
        upsert = mapper.upsert(dict(zip(mapper.columns, values, strict=True)))
        if upsert.tenant is None:
            continue
        text = mapper.render(
            {c: v for c, v in upsert.texts.items() if isinstance(v, str) or v is None}
        )  # type: ignore[misc]
        chunks = [c.text for c in chunker.chunk(text)]
        view[key_text(upsert.key)] = (str(upsert.tenant), dict(upsert.metadata), chunks)
    return view


def assert_index_matches(
    pipeline: SourcePipeline, primary_dsn: str, store_dsn: str, where: str = "true"
) -> None:
    """The index equals the source table, row by row."""
    expected = expected_view(primary_dsn, pipeline.mapper, pipeline.indexer.chunker, where)
    actual = index_view(store_dsn, pipeline.source.name)
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        assert actual[key] == value, f"row {key}"


def drain(pipeline: SourcePipeline, transactions: int, timeout_s: float = 10.0) -> list[Any]:
    """Apply the next `transactions` streamed transactions; their stats."""
    stats = []
    for _ in range(transactions):
        result = pipeline.step(timeout_s)
        assert result is not None, "expected another transaction"
        stats.append(result)
    return stats
