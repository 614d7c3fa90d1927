"""The index in strata's store for one source: documents, chunks and vectors (pgvector), the
source's position and backfill epoch, dead letters and freshness samples.

`IndexStore` is every SQL statement the streaming pipeline runs on strata's store. `write()`
applies one `WriteBatch` in a single transaction together with the source's new position, so the
index and the position never disagree: after a crash the stream resumes from that position and
rewrites idempotently.

Every write to a source's index (the stream's, a reindex's, a tenant deletion's) first locks
that source's `pipeline_sources` row (`lock_source`), so those jobs never interleave inside one
source; the maintenance jobs' own statements live in `reindex.py` and `tenants.py`. The schema
is `strata/store/migrations/0002_pipeline.sql`, `0004_pipeline_maintenance.sql` and
`0007_chunk_guard.sql` (each chunk's guard verdict, `strata.pipeline.screen`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from strata.pipeline.errors import PipelineError, StoreNotReadyError
from strata.store.migrations import lock_schema, migrations

if TYPE_CHECKING:
    from strata.config import PipelineSettings, PipelineSourceSettings
    from strata.pipeline.embedder import Embedder

PRUNE_EVERY = 500  # freshness inserts between prunes
# idempotent; shape pipeline_chunks
VECTOR_MIGRATIONS = ("pipeline", "pipeline_maintenance", "chunk_guard")


@dataclass(frozen=True)
class SourceState:
    applied_lsn: int
    epoch: int
    backfilled_at: datetime | None
    last_commit_at: datetime | None
    model: str | None


@dataclass(frozen=True)
class StoredDocument:
    tenant: str
    metadata: dict[str, Any]
    text_hashes: dict[str, str]


@dataclass(frozen=True)
class DocumentRow:
    key: str
    tenant: str
    metadata: dict[str, Any]
    text_hashes: dict[str, str]


@dataclass(frozen=True)
class ChunkVerdict:
    """The guard's verdict on one chunk's text, as stored with it (`strata.pipeline.screen`)."""

    score: float  # injection probability, 0..1
    categories: tuple[str, ...]  # attack categories found; empty: not flagged
    quarantined: bool  # never retrieved
    released_at: datetime | None = None  # when an admin reviewed it and released it
    released_by: str | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.categories)

    @property
    def released(self) -> bool:
        return self.released_at is not None


@dataclass(frozen=True)
class ChunkRow:
    chunk_no: int
    content: str
    content_hash: bytes
    vector: str  # pgvector text form '[x,y,...]'
    verdict: ChunkVerdict | None = None  # None: not scanned


class DeadLetter(NamedTuple):
    """Why a row could not be indexed, and whose row it is (tenant deletion finds it)."""

    tenant: str
    error: str


@dataclass
class WriteBatch:
    """Everything one transaction (or backfill batch) changes in the index."""

    remove_all: bool = False
    removes: list[str] = field(default_factory=list)
    metadata_only: list[DocumentRow] = field(default_factory=list)
    documents: list[tuple[DocumentRow, list[ChunkRow]]] = field(default_factory=list)
    failures: dict[str, DeadLetter] = field(default_factory=dict)  # key -> why it failed

    @property
    def applied_keys(self) -> list[str]:
        return [
            *self.removes,
            *(d.key for d in self.metadata_only),
            *(d.key for d, _ in self.documents),
        ]


@dataclass(frozen=True)
class Position:
    """Where a write leaves the source: the end LSN of the last transaction it applies, and
    the commit time of every transaction it applies (oldest first), one freshness sample each."""

    end_lsn: int
    commit_times: tuple[datetime, ...]

    def __post_init__(self) -> None:
        assert self.commit_times, "a position follows at least one transaction"

    @property
    def last_commit(self) -> datetime:
        return self.commit_times[-1]


def vector_text(vector: Sequence[float]) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"


def ensure_hnsw(conn: psycopg.Connection, dims: int) -> None:
    """The partial HNSW index over vectors of length `dims` (none above pgvector's limit of
    2000 for `vector`: those are searched exactly)."""
    if dims > 2000:
        return
    name = sql.Identifier(f"pipeline_chunks_hnsw_{dims}")
    length = sql.Literal(dims)
    conn.execute(
        sql.SQL(
            "CREATE INDEX IF NOT EXISTS {} ON pipeline_chunks USING hnsw "
            "((embedding::vector({})) vector_cosine_ops) WHERE dims = {}"
        ).format(name, length, length)
    )


def lock_source(conn: psycopg.Connection, source: str) -> str | None:
    """Lock `source`'s pipeline_sources row until the current transaction ends; the model its
    index serves (None: none recorded, or no such source). Every write to a source's index
    takes this lock first."""
    row = conn.execute(
        "SELECT model FROM pipeline_sources WHERE name = %s FOR NO KEY UPDATE", (source,)
    ).fetchone()
    return None if row is None else row[0]


class IndexStore:
    """strata's store, seen by one source, over one sync connection in autocommit mode (each
    write is an explicit transaction; reads stand alone)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        source: str,
        collection: str,
        model: str,
        dims: int,
        *,
        freshness_samples: int = 10_000,
        retry_interval_s: float = 30.0,
    ) -> None:
        assert conn.autocommit, "IndexStore needs an autocommit connection"
        self.conn = conn
        self.source = source
        self.collection = collection
        self.model = model
        self.dims = dims
        self._samples = freshness_samples
        self._retry_s = retry_interval_s
        self._writes = 0

    @classmethod
    def for_source(
        cls,
        conn: psycopg.Connection,
        source: PipelineSourceSettings,
        settings: PipelineSettings,
        embedder: Embedder,
    ) -> IndexStore:
        """The store as one configured source, embedding with `embedder`, sees it."""
        return cls(
            conn,
            source.name,
            source.collection,
            embedder.model,
            embedder.dims,
            freshness_samples=settings.freshness_samples,
            retry_interval_s=settings.retry_interval_s,
        )

    # --- schema and source state -------------------------------------------------------------

    def ensure_ready(self, slot: str) -> SourceState:
        """Check the vector table (re-running the idempotent 0002 migration if pgvector was
        installed after it ran), add an HNSW index for this model's length, register the
        source; its state."""
        with self.conn.transaction():
            if not self._has_chunks_table():
                self._create_chunks_table()
            self._ensure_hnsw()
            self.conn.execute(
                "INSERT INTO pipeline_sources (name, slot_name, model) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO NOTHING",
                (self.source, slot, self.model),
            )
        return self.state()

    def _has_chunks_table(self) -> bool:
        row = self.conn.execute("SELECT to_regclass('pipeline_chunks') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def _create_chunks_table(self) -> None:
        lock_schema(self.conn)
        row = self.conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
        if row is None:
            raise StoreNotReadyError(
                "strata's store has no pgvector: install the extension on its PostgreSQL "
                "(CREATE EXTENSION vector, as a superuser) and start again"
            )
        for migration in migrations():
            if migration.name in VECTOR_MIGRATIONS:
                self.conn.execute(migration.sql)

    def _ensure_hnsw(self) -> None:
        ensure_hnsw(self.conn, self.dims)

    def state(self) -> SourceState:
        with self.conn.transaction():
            row = self.conn.execute(
                "SELECT applied_lsn, epoch, backfilled_at, last_commit_at, model "
                "FROM pipeline_sources WHERE name = %s",
                (self.source,),
            ).fetchone()
        assert row is not None, "ensure_ready() first"
        return SourceState(*row)

    def start_backfill(self) -> int:
        """Open a new epoch (documents not rewritten in it are stale); the new epoch."""
        with self.conn.transaction():
            row = self.conn.execute(
                "UPDATE pipeline_sources SET epoch = epoch + 1, backfilled_at = NULL, "
                "applied_lsn = 0, model = %s WHERE name = %s RETURNING epoch",
                (self.model, self.source),
            ).fetchone()
        assert row is not None
        return int(row[0])

    def finish_backfill(self, epoch: int, rows: int, consistent_lsn: int) -> int:
        """Delete documents the snapshot no longer had; mark the backfill done as of the slot's
        start point. The number of stale documents deleted."""
        with self.conn.transaction():
            deleted = self.conn.execute(
                "DELETE FROM pipeline_documents WHERE source = %s AND epoch < %s",
                (self.source, epoch),
            ).rowcount
            self.conn.execute(
                "UPDATE pipeline_sources SET backfilled_at = now(), backfill_rows = %s, "
                "applied_lsn = %s WHERE name = %s",
                (rows, consistent_lsn, self.source),
            )
        return deleted

    # --- reads the indexer plans with ---------------------------------------------------------

    def documents(self, keys: Sequence[str]) -> dict[str, StoredDocument]:
        rows = self.conn.execute(
            "SELECT key, tenant, metadata, text_hashes FROM pipeline_documents "
            "WHERE source = %s AND key = ANY(%s)",
            (self.source, list(keys)),
        ).fetchall()
        return {r[0]: StoredDocument(r[1], r[2], r[3]) for r in rows}

    def excluded_tenants(self) -> frozenset[str]:
        """Tenants this source must not index (`strata pipeline delete-tenant`)."""
        rows = self.conn.execute(
            "SELECT tenant FROM pipeline_excluded_tenants WHERE source IN (%s, '*')",
            (self.source,),
        ).fetchall()
        return frozenset(r[0] for r in rows)

    def vectors(self, keys: Sequence[str]) -> dict[str, dict[bytes, str]]:
        """Per document: content hash -> vector (text form) of its chunks under this model."""
        rows = self.conn.execute(
            "SELECT key, content_hash, embedding::text FROM pipeline_chunks "
            "WHERE source = %s AND key = ANY(%s) AND model = %s",
            (self.source, list(keys), self.model),
        ).fetchall()
        found: dict[str, dict[bytes, str]] = {}
        for key, digest, vector in rows:
            found.setdefault(key, {})[bytes(digest)] = vector
        return found

    def verdicts(self, keys: Sequence[str]) -> dict[bytes, ChunkVerdict]:
        """Content hash -> the stored verdict of a scanned chunk of these documents."""
        rows = self.conn.execute(
            "SELECT DISTINCT ON (content_hash) content_hash, guard_score, guard_categories, "
            "quarantined, released_at, released_by FROM pipeline_chunks "
            "WHERE source = %s AND key = ANY(%s) AND guard_score IS NOT NULL "
            "ORDER BY content_hash, released_at IS NULL",
            (self.source, list(keys)),
        ).fetchall()
        return {bytes(r[0]): ChunkVerdict(r[1], tuple(r[2]), *r[3:]) for r in rows}

    def due_dead_letters(self, max_attempts: int, limit: int = 100) -> list[str]:
        with self.conn.transaction():
            rows = self.conn.execute(
                "SELECT key FROM pipeline_dead_letters WHERE source = %s AND attempts < %s "
                "AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT %s",
                (self.source, max_attempts, limit),
            ).fetchall()
        return [r[0] for r in rows]

    # --- the one write ------------------------------------------------------------------------

    def write(self, batch: WriteBatch, epoch: int, position: Position | None) -> None:
        """Apply `batch` and, when given, move the source to `position`: one transaction.
        Raises `PipelineError` when a reindex has switched the source to another model."""
        with self.conn.transaction():
            self._check_model(lock_source(self.conn, self.source))
            if batch.remove_all:
                self._execute("DELETE FROM pipeline_documents WHERE source = %s", (self.source,))
            if batch.removes:
                self._execute(
                    "DELETE FROM pipeline_documents WHERE source = %s AND key = ANY(%s)",
                    (self.source, batch.removes),
                )
            self._write_metadata(batch.metadata_only, epoch)
            self._write_documents(batch.documents, epoch)
            self._drop_excluded(batch)
            self._write_dead_letters(batch)
            if position is not None:
                self._advance(position)

    def _execute(self, query: str, params: Sequence[Any]) -> None:
        self.conn.execute(query, params)

    def _check_model(self, serving: str | None) -> None:
        if serving is not None and serving != self.model:
            raise PipelineError(
                f"pipeline source '{self.source}' was switched to {serving} by `strata pipeline "
                f"reindex`, but this process embeds with {self.model}: restart it with the "
                f"pipeline.embedder that makes {serving}"
            )

    def _drop_excluded(self, batch: WriteBatch) -> None:
        """The last word on excluded tenants: the indexer already skips them, and this catches
        an exclusion committed since it looked (the source lock orders the two)."""
        keys = [d.key for d in batch.metadata_only] + [d.key for d, _ in batch.documents]
        if keys:
            self._execute(
                "DELETE FROM pipeline_documents d USING pipeline_excluded_tenants x "
                "WHERE d.source = %s AND d.key = ANY(%s) AND x.tenant = d.tenant "
                "AND x.source IN (d.source, '*')",
                (self.source, keys),
            )

    def _upsert_documents(self, documents: Sequence[DocumentRow], epoch: int) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO pipeline_documents "
                "(source, key, tenant, collection, metadata, text_hashes, epoch) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (source, key) DO UPDATE SET "
                "tenant = excluded.tenant, collection = excluded.collection, "
                "metadata = excluded.metadata, text_hashes = excluded.text_hashes, "
                "epoch = excluded.epoch, updated_at = now()",
                [
                    (
                        self.source,
                        d.key,
                        d.tenant,
                        self.collection,
                        Jsonb(d.metadata),
                        Jsonb(d.text_hashes),
                        epoch,
                    )
                    for d in documents
                ],
            )

    def _write_metadata(self, documents: Sequence[DocumentRow], epoch: int) -> None:
        """Tenant and metadata rewritten on the document and every chunk; nothing embedded."""
        if not documents:
            return
        self._upsert_documents(documents, epoch)
        with self.conn.cursor() as cursor:
            cursor.executemany(
                "UPDATE pipeline_chunks SET tenant = %s, metadata = %s, collection = %s, "
                "updated_at = now() WHERE source = %s AND key = %s",
                [
                    (d.tenant, Jsonb(d.metadata), self.collection, self.source, d.key)
                    for d in documents
                ],
            )

    def _write_documents(
        self, documents: Sequence[tuple[DocumentRow, list[ChunkRow]]], epoch: int
    ) -> None:
        if not documents:
            return
        self._upsert_documents([d for d, _ in documents], epoch)
        self._execute(
            "DELETE FROM pipeline_chunks WHERE source = %s AND key = ANY(%s)",
            (self.source, [d.key for d, _ in documents]),
        )
        rows = [
            (
                self.source,
                d.key,
                c.chunk_no,
                d.tenant,
                self.collection,
                c.content,
                c.content_hash,
                Jsonb(d.metadata),
                self.model,
                self.dims,
                c.vector,
                *_verdict_columns(c.verdict),
            )
            for d, chunks in documents
            for c in chunks
        ]
        with self.conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO pipeline_chunks (source, key, chunk_no, tenant, collection, "
                "content, content_hash, metadata, model, dims, embedding, guard_score, "
                "guard_categories, quarantined, released_at, released_by) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::vector, %s, %s, %s, %s, %s)",
                rows,
            )

    def _write_dead_letters(self, batch: WriteBatch) -> None:
        applied = batch.applied_keys
        if applied:
            self._execute(
                "DELETE FROM pipeline_dead_letters WHERE source = %s AND key = ANY(%s)",
                (self.source, applied),
            )
        if not batch.failures:
            return
        with self.conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO pipeline_dead_letters (source, key, tenant, error, next_attempt_at) "
                "VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s)) "
                "ON CONFLICT (source, key) DO UPDATE SET error = excluded.error, "
                "tenant = excluded.tenant, "
                "attempts = pipeline_dead_letters.attempts + 1, last_failed_at = now(), "
                "next_attempt_at = now() + make_interval(secs => "
                "%s * power(2, least(pipeline_dead_letters.attempts, 12)))",
                [
                    (self.source, k, f.tenant, f.error[:2000], self._retry_s, self._retry_s)
                    for k, f in batch.failures.items()
                ],
            )

    def _advance(self, position: Position) -> None:
        self._execute(
            "UPDATE pipeline_sources SET applied_lsn = greatest(applied_lsn, %s), "
            "last_commit_at = %s, last_applied_at = clock_timestamp() WHERE name = %s",
            (position.end_lsn, position.last_commit, self.source),
        )
        self._execute(
            "INSERT INTO pipeline_freshness (source, commit_at, seconds) SELECT %s, t, "
            "extract(epoch FROM clock_timestamp() - t) FROM unnest(%s::timestamptz[]) AS t",
            (self.source, list(position.commit_times)),
        )
        before = self._writes
        self._writes += len(position.commit_times)
        if self._writes // PRUNE_EVERY > before // PRUNE_EVERY:
            self._execute(
                "DELETE FROM pipeline_freshness WHERE source = %s AND id < (SELECT id FROM "
                "pipeline_freshness WHERE source = %s ORDER BY id DESC OFFSET %s LIMIT 1)",
                (self.source, self.source, self._samples),
            )


def _verdict_columns(verdict: ChunkVerdict | None) -> tuple[object, ...]:
    """guard_score, guard_categories, quarantined, released_at, released_by."""
    if verdict is None:
        return (None, [], False, None, None)
    v = verdict
    return (v.score, list(v.categories), v.quarantined, v.released_at, v.released_by)
