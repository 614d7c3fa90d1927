"""Quarantined chunks: what the guard held back from retrieval, and releasing them after review
(`strata pipeline quarantine list|release`, `GET /admin/pipeline/quarantine`,
`POST /admin/pipeline/quarantine/release`).

A chunk is quarantined when the guard flags its text as likely prompt injection under its
tenant's policy `documents: block` (`strata.pipeline.screen`). It stays in the index with its
vector, so a release makes it retrievable at once, with no re-embedding. A release marks the
text reviewed-safe: it holds while the text stays the same (the indexer keeps the stored
verdict) and ends when the text changes (a new text is scanned afresh). A release that commits
while the same document is being rewritten can be lost to that write; list again to check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from strata.errors import InvalidRequestError
from strata.pipeline.index import lock_source

MAX_LIST = 1000

_LIST = (
    "SELECT DISTINCT ON (source, key, chunk_no) source, key, chunk_no, tenant, collection, "
    "guard_score, guard_categories, content, updated_at FROM pipeline_chunks "
    "WHERE quarantined AND (%(sources)s::text[] IS NULL OR source = ANY(%(sources)s)) "
    "AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s) "
    "ORDER BY source, key, chunk_no LIMIT %(limit)s"
)
# Every model's row of the chunk (a reindex keeps one per model).
_RELEASE = (
    "UPDATE pipeline_chunks SET quarantined = false, released_at = now(), released_by = %s "
    "WHERE source = %s AND key = %s AND (%s::integer IS NULL OR chunk_no = %s) AND quarantined "
    "RETURNING chunk_no"
)


@dataclass(frozen=True)
class QuarantinedChunk:
    source: str
    key: str  # the source row's primary key (text; a JSON array for composite keys)
    chunk_no: int
    tenant: str
    collection: str
    score: float  # injection probability, 0..1
    categories: list[str]
    content: str
    updated_at: datetime


def quarantined(
    conn: psycopg.Connection,
    *,
    sources: Sequence[str] | None = None,
    tenant: str | None = None,
    limit: int = 100,
) -> list[QuarantinedChunk]:
    """Quarantined chunks of `sources` (None: every source), of `tenant` if given, by source,
    key and chunk number; at most `limit` (1 to MAX_LIST)."""
    if not 1 <= limit <= MAX_LIST:
        raise InvalidRequestError(f"limit: give 1 to {MAX_LIST}", param="limit")
    _check_text("tenant", tenant or "")
    params = {"sources": list(sources) if sources else None, "tenant": tenant, "limit": limit}
    rows = conn.execute(_LIST, params).fetchall()
    return [QuarantinedChunk(*row) for row in rows]


def release(
    conn: psycopg.Connection, source: str, key: str, chunk_no: int | None, actor: str
) -> list[int]:
    """Release the quarantined chunks of one document (all of them, or chunk `chunk_no`);
    the chunk numbers released (empty: none matched). `conn`: autocommit."""
    if not key:
        raise InvalidRequestError("key: give the document's key as `list` shows it", param="key")
    _check_text("key", key)
    _check_text("source", source)
    if chunk_no is not None and chunk_no < 0:
        raise InvalidRequestError(
            "chunk: give a chunk number from `list` (0 or more)", param="chunk"
        )
    with conn.transaction():
        lock_source(conn, source)  # orders the release with the source's index writes
        rows = conn.execute(_RELEASE, (actor, source, key, chunk_no, chunk_no)).fetchall()
    return sorted({r[0] for r in rows})


def _check_text(name: str, value: str) -> None:
    if "\x00" in value:  # PostgreSQL text cannot hold it: no chunk matches, say so
        raise InvalidRequestError(
            f"{name}: must not contain the NUL character (U+0000)", param=name
        )
