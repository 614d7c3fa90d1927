"""`strata pipeline reindex`: move one source's index to a new embedding model without a gap.

    check    the source has a finished index; the model it serves (the old one) is not the
             embedder's
    build    passes over the chunks that have no *twin* yet (a row of the new model with the
             same key, chunk number and text): embed the stored text (the primary is not
             read) and insert the twin beside the old row, one batch per transaction
    switch   one transaction: lock the source, build the twins of what changed since the last
             pass, set `pipeline_sources.model` to the new model. Retrieval searches only the
             model a source serves, so every query sees the old vectors before this commit and
             the new ones after it
    drop     delete the source's vectors of every other model, a batch per transaction

Killing it is safe at any point. Before the switch the old rows and the served model are
untouched, so retrieval keeps answering from them, and a rerun skips the twins already built.
After the switch a rerun only finishes the drop (as does a reindex to the model already served,
which also clears twins an abandoned reindex left behind).

The stream may keep running on the old model meanwhile and keeps the old index fresh: each of
its writes replaces a changed document's rows of every model, so the next pass (or the switch)
builds those twins again. After the switch that process's next write stops it with a message
(`IndexStore.write`): restart it with the new `pipeline.embedder`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from tqdm import tqdm

from strata.pipeline.embedder import Embedder
from strata.pipeline.errors import PipelineError
from strata.pipeline.index import ensure_hnsw, lock_source, vector_text

BATCH_CHUNKS = 256  # chunks embedded and inserted per store transaction
DROP_BATCH = 5000  # old vectors deleted per transaction
MAX_PASSES = 5  # build passes before the switch catches up on the rest under the lock

_WITHOUT_TWIN = (
    "FROM pipeline_chunks c WHERE c.source = %(source)s AND c.model = %(old)s "
    "AND NOT EXISTS (SELECT 1 FROM pipeline_chunks n WHERE n.source = c.source "
    "AND n.key = c.key AND n.chunk_no = c.chunk_no AND n.model = %(new)s "
    "AND n.content_hash = c.content_hash)"
)
# A twin copies its old row (tenant, metadata, text, the guard's verdict) as it is now: a row
# the stream changed since it was read no longer matches its hash, gets no twin here, and is
# found again later.
_INSERT_TWINS = (
    "INSERT INTO pipeline_chunks (source, key, chunk_no, tenant, collection, content, "
    "content_hash, metadata, model, dims, embedding, guard_score, guard_categories, "
    "quarantined, released_at, released_by) "
    "SELECT c.source, c.key, c.chunk_no, c.tenant, c.collection, c.content, c.content_hash, "
    "c.metadata, %(new)s, %(dims)s, t.embedding::vector, c.guard_score, c.guard_categories, "
    "c.quarantined, c.released_at, c.released_by FROM unnest(%(keys)s::text[], "
    "%(numbers)s::integer[], %(hashes)s::bytea[], %(vectors)s::text[]) "
    "AS t(key, chunk_no, content_hash, embedding) "
    "JOIN pipeline_chunks c ON c.source = %(source)s AND c.model = %(old)s AND c.key = t.key "
    "AND c.chunk_no = t.chunk_no AND c.content_hash = t.content_hash "
    "ON CONFLICT (source, key, chunk_no, model) DO UPDATE SET tenant = excluded.tenant, "
    "collection = excluded.collection, content = excluded.content, "
    "content_hash = excluded.content_hash, metadata = excluded.metadata, dims = excluded.dims, "
    "embedding = excluded.embedding, guard_score = excluded.guard_score, "
    "guard_categories = excluded.guard_categories, quarantined = excluded.quarantined, "
    "released_at = excluded.released_at, released_by = excluded.released_by, updated_at = now()"
)
_TWINS = "SELECT count(*) FROM pipeline_chunks WHERE source = %(source)s AND model = %(new)s"
_DROP_OTHERS = (
    "DELETE FROM pipeline_chunks c USING (SELECT key, chunk_no, model FROM pipeline_chunks "
    "WHERE source = %(source)s AND model <> (SELECT model FROM pipeline_sources "
    "WHERE name = %(source)s) LIMIT %(limit)s) d "
    "WHERE c.source = %(source)s AND c.key = d.key AND c.chunk_no = d.chunk_no "
    "AND c.model = d.model"
)


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as the index holds it: what a twin is built from."""

    key: str
    chunk_no: int
    content: str
    content_hash: bytes


@dataclass(frozen=True)
class ReindexResult:
    source: str
    old_model: str  # the model the source served when the reindex started
    new_model: str
    embedded: int  # distinct chunk texts this run sent to the model
    already_built: int  # twins an earlier, interrupted run had left (not embedded again)
    dropped: int  # vectors of other models deleted after the switch
    seconds: float

    @property
    def switched(self) -> bool:
        return self.old_model != self.new_model


class Reindexer:
    """Re-embeds one source's index with `embedder` (see the module docstring), over an
    autocommit connection to strata's store. Not thread-safe; one run per source at a time
    (a second one's switch finds the model changed and stops with a message)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        source: str,
        embedder: Embedder,
        *,
        batch_chunks: int = BATCH_CHUNKS,
    ) -> None:
        assert conn.autocommit, "Reindexer needs an autocommit connection"
        self.conn = conn
        self.source = source
        self.embedder = embedder
        self._batch = batch_chunks

    def run(self, *, progress: bool = True) -> ReindexResult:
        """check → build → switch → drop; raises `PipelineError` when the source has no
        complete index, `EmbeddingError` when the model fails (a rerun resumes)."""
        started = time.monotonic()
        old = self._served_model()
        embedded = built = 0
        if old != self.embedder.model:
            ensure_hnsw(self.conn, self.embedder.dims)
            built = self._count(_TWINS, old)
            embedded = self._build(old, progress)
            embedded += self._switch(old)
        dropped = self._drop_others()
        seconds = time.monotonic() - started
        return ReindexResult(
            self.source, old, self.embedder.model, embedded, built, dropped, seconds
        )

    # --- check -------------------------------------------------------------------------------

    def _served_model(self) -> str:
        row = self.conn.execute(
            "SELECT model, backfilled_at FROM pipeline_sources WHERE name = %s", (self.source,)
        ).fetchone()
        backfill = f"`strata pipeline backfill --source {self.source}`"
        if row is None:
            raise PipelineError(
                f"pipeline source '{self.source}' has no index yet, so there is nothing to "
                f"re-embed: build it with {backfill} (it embeds with pipeline.embedder)"
            )
        model, backfilled_at = row
        if model is None or backfilled_at is None:
            raise PipelineError(
                f"pipeline source '{self.source}' has no finished backfill, so its index is "
                f"incomplete: finish it with {backfill} instead of reindexing"
            )
        return str(model)

    # --- build -------------------------------------------------------------------------------

    def _build(self, old: str, progress: bool) -> int:
        """Passes until one finds at most a batch left (the switch builds that); embedded."""
        embedded = 0
        missing = self._count(f"SELECT count(*) {_WITHOUT_TWIN}", old)
        desc = f"reindex {self.source}"
        with tqdm(total=missing, unit="chunks", desc=desc, disable=not progress) as bar:
            for _ in range(MAX_PASSES):
                done = self._pass(old, bar.update)
                embedded += done
                if done <= self._batch:
                    break
                bar.total = bar.n + self._count(f"SELECT count(*) {_WITHOUT_TWIN}", old)
                bar.refresh()
        return embedded

    def _pass(self, old: str, advance: Callable[[int], object]) -> int:
        """One walk in key order over chunks without a twin, building theirs; embedded."""
        embedded, after = 0, ("", -1)
        while chunks := self._missing(old, after):
            embedded += self._add_twins(old, chunks)
            advance(len(chunks))
            after = (chunks[-1].key, chunks[-1].chunk_no)
        return embedded

    def _missing(self, old: str, after: tuple[str, int]) -> list[StoredChunk]:
        rows = self.conn.execute(
            f"SELECT c.key, c.chunk_no, c.content, c.content_hash {_WITHOUT_TWIN} "
            "AND (c.key, c.chunk_no) > (%(key)s, %(chunk_no)s) "
            "ORDER BY c.key, c.chunk_no LIMIT %(limit)s",
            {**self._params(old), "key": after[0], "chunk_no": after[1], "limit": self._batch},
        ).fetchall()
        return [StoredChunk(key, number, text, bytes(digest)) for key, number, text, digest in rows]

    def _add_twins(self, old: str, chunks: Sequence[StoredChunk]) -> int:
        """Embed each distinct text once (outside the transaction), then insert the twins
        under the source lock; the number of texts embedded."""
        texts = {c.content_hash: c.content for c in chunks}
        vectors = self.embedder.embed_sync(list(texts.values()))
        by_hash = {h: vector_text(v) for h, v in zip(texts, vectors, strict=True)}
        twins = {
            "keys": [c.key for c in chunks],
            "numbers": [c.chunk_no for c in chunks],
            "hashes": [c.content_hash for c in chunks],
            "vectors": [by_hash[c.content_hash] for c in chunks],
        }
        with self.conn.transaction():
            self._lock(old)
            self.conn.execute(_INSERT_TWINS, {**self._params(old), **twins})
        return len(texts)

    # --- switch and drop ---------------------------------------------------------------------

    def _switch(self, old: str) -> int:
        """Build the last twins and serve the new model, in one transaction; embedded."""
        with self.conn.transaction():
            self._lock(old)
            embedded = self._pass(old, lambda _: None)
            assert self._count(f"SELECT count(*) {_WITHOUT_TWIN}", old) == 0, "twins missing"
            self.conn.execute(
                "UPDATE pipeline_sources SET model = %s WHERE name = %s",
                (self.embedder.model, self.source),
            )
        return embedded

    def _drop_others(self) -> int:
        """Delete the vectors of every model but the one served; how many."""
        dropped = 0
        while True:
            deleted = self.conn.execute(
                _DROP_OTHERS, {"source": self.source, "limit": DROP_BATCH}
            ).rowcount
            dropped += deleted
            if deleted < DROP_BATCH:
                return dropped

    # --- helpers -----------------------------------------------------------------------------

    def _lock(self, old: str) -> None:
        serving = lock_source(self.conn, self.source)
        if serving != old:
            raise PipelineError(
                f"pipeline source '{self.source}' was switched from {old} to {serving} while "
                "this reindex ran (another reindex or a backfill): run it again"
            )

    def _params(self, old: str) -> dict[str, Any]:
        return {
            "source": self.source,
            "old": old,
            "new": self.embedder.model,
            "dims": self.embedder.dims,
        }

    def _count(self, query: str, old: str) -> int:
        row = self.conn.execute(query, self._params(old)).fetchone()
        assert row is not None
        return int(row[0])
