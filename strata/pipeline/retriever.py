"""Tenant-scoped vector search over the pipeline's index.

`Retriever.search(tenant, collection, query_text, k, metadata_filter)` embeds the query with the
same model that built the index and returns the `k` nearest chunks of that tenant's collection.
Tenant isolation is part of the SQL (`WHERE tenant = %s`), never left to callers; so are the
collection, the embedding model and the optional metadata filter (`metadata @> filter`). Only
sources whose index currently serves this embedder's model are searched (`pipeline_sources.
model`): while `strata pipeline reindex` builds a new model's vectors beside the old ones they
stay invisible, and its switch moves every query from the old vectors to the new at one commit.
Chunks the guard quarantined at indexing (`strata.pipeline.screen`) are never returned; chunks
it only flagged come back with their categories in `Hit.flagged`.

Filtered HNSW scans stop after `ef_search` candidates and can return too few rows when the
filter is selective (a small tenant); pgvector 0.8's iterative scan keeps scanning the graph
until `k` rows pass the filter or `max_scan_tuples` are visited, so recall holds under the
filter. The planner may also pick the (tenant, collection, model) b-tree and sort exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from strata.config import Settings
from strata.errors import InvalidRequestError
from strata.pipeline.embedder import Embedder
from strata.pipeline.index import vector_text
from strata.store.database import Pool

MAX_K = 100
_SCALAR = (str, int, float, bool)


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk and where it came from."""

    source: str  # pipeline source name
    key: str  # the source row's primary key (text; a JSON array for composite keys)
    chunk_no: int
    collection: str
    content: str
    score: float  # cosine similarity, 1.0 = same direction
    metadata: dict[str, Any]
    flagged: tuple[str, ...] = ()  # the guard's injection categories (policy `documents: flag`)


class Retriever:
    """Searches the index with one embedder over an async connection pool."""

    def __init__(
        self,
        pool: Pool,
        embedder: Embedder,
        *,
        ef_search: int = 100,
        max_scan_tuples: int = 20_000,
    ) -> None:
        self._pool = pool
        self.embedder = embedder
        self._settings = (str(ef_search), str(max_scan_tuples))
        dims = sql.Literal(embedder.dims)
        distance = sql.SQL("(embedding::vector({})) <=> %(query)s::vector({})").format(dims, dims)
        self._query = sql.SQL(
            "WITH hits AS MATERIALIZED ("
            "SELECT source, key, chunk_no, collection, content, metadata, guard_categories, "
            "{distance} AS distance "
            "FROM pipeline_chunks WHERE dims = {dims} AND model = %(model)s AND NOT quarantined "
            "AND source = ANY(ARRAY(SELECT name FROM pipeline_sources "
            "WHERE coalesce(model, %(model)s) = %(model)s)) "
            "AND tenant = %(tenant)s AND collection = %(collection)s AND {filter} "
            "ORDER BY {distance} LIMIT %(k)s) "
            "SELECT source, key, chunk_no, collection, content, metadata, 1 - distance, "
            "guard_categories "
            "FROM hits ORDER BY distance"
        )
        self._distance = distance
        self._dims = dims

    @classmethod
    def from_settings(cls, settings: Settings, pool: Pool, embedder: Embedder) -> Retriever:
        pipeline = settings.pipeline
        return cls(
            pool, embedder, ef_search=pipeline.ef_search, max_scan_tuples=pipeline.max_scan_tuples
        )

    async def search(
        self,
        tenant: str,
        collection: str,
        query_text: str,
        k: int = 5,
        metadata_filter: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """The `k` chunks of `tenant`'s `collection` nearest to `query_text`, best first.
        `metadata_filter` keeps chunks whose metadata contains every given key/value.
        Raises `InvalidRequestError` for a bad k, query or filter."""
        if not query_text.strip():
            raise InvalidRequestError("query must not be empty", param="query")
        _check(k, metadata_filter)
        (vector,) = await self.embedder.embed([query_text])
        return await self.search_vector(tenant, collection, vector, k, metadata_filter)

    async def search_vector(
        self,
        tenant: str,
        collection: str,
        vector: Sequence[float],
        k: int = 5,
        metadata_filter: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """As `search`, for a vector from this retriever's embedder."""
        assert tenant, "a tenant is required: retrieval is always tenant-scoped"
        _check(k, metadata_filter)
        params: dict[str, Any] = {
            "query": vector_text(vector),
            "model": self.embedder.model,
            "tenant": tenant,
            "collection": collection,
            "k": k,
        }
        condition = sql.SQL("true")
        if metadata_filter:
            condition = sql.SQL("metadata @> %(filter)s")
            params["filter"] = Jsonb(dict(metadata_filter))
        query = self._query.format(distance=self._distance, dims=self._dims, filter=condition)
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, true), "
                "set_config('hnsw.max_scan_tuples', %s, true), "
                "set_config('hnsw.iterative_scan', 'relaxed_order', true)",
                self._settings,
            )
            cursor = await conn.execute(query, params)
            rows = await cursor.fetchall()
        return [Hit(r[0], r[1], r[2], r[3], r[4], float(r[6]), r[5], tuple(r[7])) for r in rows]


def _check(k: int, metadata_filter: Mapping[str, Any] | None) -> None:
    if not 1 <= k <= MAX_K:
        raise InvalidRequestError(f"k must be between 1 and {MAX_K}", param="k")
    for name, value in (metadata_filter or {}).items():
        if not isinstance(value, _SCALAR) and value is not None:
            raise InvalidRequestError(
                f"metadata filter '{name}': values must be strings, numbers or booleans",
                param="metadata_filter",
            )
