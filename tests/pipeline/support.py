"""Helpers for pipeline tests: what the index holds vs what the source table says it should."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from strata.config import PipelineSourceSettings
from strata.pipeline.chunker import Chunker
from strata.pipeline.embedder import Embedder
from strata.pipeline.mapping import Mapper, key_text
from strata.pipeline.primary import describe_table
from strata.pipeline.retriever import Retriever
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


def wait_index_equals_table(
    primary_dsn: str,
    store_dsn: str,
    source: PipelineSourceSettings,
    chunker: Chunker,
    timeout_s: float = 30.0,
) -> None:
    """Poll until the index equals the primary's `public.tickets` as `source` maps it (a worker
    in another process is applying changes), then assert it row by row."""
    with psycopg.connect(primary_dsn) as conn:
        mapper = Mapper(source, ("id",), describe_table(conn, "public.tickets").column_oids)
    deadline = time.monotonic() + timeout_s
    while True:
        expected, actual = expected_view(primary_dsn, mapper, chunker), index_view(store_dsn)
        if expected == actual or time.monotonic() > deadline:
            break
        time.sleep(0.2)
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


class HashEmbedder:
    """A deterministic stand-in for a second embedding model, for tests: each lower-cased word
    is hashed to one of `dims` signed buckets and the counts are L2-normalised. Texts sharing
    words come out close, so retrieval over it behaves sensibly; it understands nothing."""

    def __init__(self, dims: int = 64, model: str = "test/word-hash-64") -> None:
        self.model, self.dims = model, dims

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._one(text) for text in texts]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_sync(texts)

    def _one(self, text: str) -> list[float]:
        vector = [0.0] * self.dims
        for word in re.findall(r"\w+", text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
            vector[digest[0] % self.dims] += 1.0 if digest[1] & 1 else -1.0
        norm = math.sqrt(sum(x * x for x in vector))
        return [x / norm for x in vector] if norm else [1.0] + [0.0] * (self.dims - 1)


class HookedEmbedder:
    """Another embedder with `hook(call_number)` run before each of its calls (from 1): a test
    looks at the store mid-run there, or raises to stop the run as a kill would."""

    def __init__(self, inner: Embedder, hook: Callable[[int], None]) -> None:
        self.inner, self.hook, self.calls = inner, hook, 0
        self.model, self.dims = inner.model, inner.dims

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        self.hook(self.calls)
        return self.inner.embed_sync(texts)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_sync(texts)


def search_keys(
    store_dsn: str, embedder: Embedder, tenant: str, query: str, collection: str = "support"
) -> list[str]:
    """The keys `Retriever.search` returns (best first, k=10), from synchronous test code."""

    async def search() -> list[str]:
        async with AsyncConnectionPool(store_dsn, min_size=1, max_size=1) as pool:
            hits = await Retriever(pool, embedder).search(tenant, collection, query, k=10)
        return [hit.key for hit in hits]

    return asyncio.run(search())


def chunk_models(store_dsn: str, source: str = "tickets") -> dict[str, int]:
    """Chunks per embedding model of `source`."""
    with psycopg.connect(store_dsn) as conn:
        rows = conn.execute(
            "SELECT model, count(*) FROM pipeline_chunks WHERE source = %s GROUP BY model",
            (source,),
        ).fetchall()
    return dict(rows)


def settle(pipeline: SourcePipeline, quiet_s: float = 0.5) -> None:
    """Apply streamed transactions until none arrives within `quiet_s`."""
    while pipeline.step(quiet_s) is not None:
        pass
