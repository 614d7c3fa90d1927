"""Document changes → one index write: collapse → resolve → chunk → embed what changed → write.

`Indexer.apply` is the pipeline's middle: given the document changes of one source transaction
(or one backfill batch) it

1. collapses them to the last change per row (a truncate clears what came before);
2. resolves each upsert against what the index holds: if no text column's hash changed, the
   row is *metadata-only* (tenant and metadata rewritten on every chunk, nothing embedded);
   values the stream did not send (unchanged TOAST) come from the index or, when the text
   itself is needed, from the primary (`refetch`); a row of a tenant excluded from the source
   (`strata pipeline delete-tenant`) becomes a removal, its text never sent to the model;
3. chunks changed documents and embeds only chunks whose content hash the document did not
   already have (embeddings move with their text when chunk numbers shift);
4. screens them for indirect prompt injection (`strata.pipeline.screen`): only texts without a
   stored verdict are scanned, stored verdicts move with their text like embeddings;
5. writes everything, dead letters and the new position in one store transaction.

A row that cannot be embedded (or scanned) goes to the dead-letter table; the rest of the batch
is written.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from strata.pipeline.changes import Row
from strata.pipeline.chunker import Chunk, Chunker
from strata.pipeline.embedder import Embedder
from strata.pipeline.index import (
    ChunkRow,
    ChunkVerdict,
    DeadLetter,
    DocumentRow,
    IndexStore,
    Position,
    StoredDocument,
    WriteBatch,
    vector_text,
)
from strata.pipeline.mapping import DocChange, Key, Mapper, Remove, RemoveAll, Upsert, key_text
from strata.pipeline.pgoutput import UNCHANGED, Unchanged
from strata.pipeline.screen import DocumentScreen

logger = logging.getLogger(__name__)
Refetch = Callable[[Sequence[Key]], list[Row]]


@dataclass
class ApplyStats:
    """What one `apply` did; `embedded` counts chunk texts sent to the model, and the two
    counters split `embedded` and `reused` by document key (one apply may cover many rows)."""

    upserts: int = 0
    metadata_only: int = 0
    removes: int = 0
    truncates: int = 0
    chunks: int = 0
    embedded: int = 0
    reused: int = 0
    failures: int = 0
    scanned: int = 0  # chunk texts the guard scanned (stored verdicts reused are not counted)
    flagged: int = 0  # of those, flagged as likely prompt injection
    quarantined: int = 0  # of those, quarantined (policy `documents: block`)
    embedded_by_key: Counter[str] = field(default_factory=Counter)
    reused_by_key: Counter[str] = field(default_factory=Counter)

    def add(self, other: ApplyStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _TextPlan:
    document: DocumentRow
    chunks: list[Chunk]
    vectors: dict[bytes, str] = field(default_factory=dict)  # content hash -> vector
    verdicts: dict[bytes, ChunkVerdict] = field(default_factory=dict)  # content hash -> verdict


def collapse(changes: Sequence[DocChange]) -> tuple[dict[Key, Upsert | Remove], bool]:
    """The last change per row, and whether a truncate came first."""
    ops: dict[Key, Upsert | Remove] = {}
    remove_all = False
    for change in changes:
        if isinstance(change, RemoveAll):
            ops.clear()
            remove_all = True
        elif isinstance(change, Upsert):
            earlier = ops.get(change.key)
            ops[change.key] = change.filled_from(earlier) if isinstance(earlier, Upsert) else change
        else:
            ops[change.key] = change
    return ops, remove_all


def text_hash(value: str | None) -> str:
    return "" if value is None else hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


class Indexer:
    """Applies document changes of one source to its index."""

    def __init__(
        self,
        store: IndexStore,
        mapper: Mapper,
        chunker: Chunker,
        embedder: Embedder,
        refetch: Refetch,
        *,
        refetch_all: bool = False,
        screen: DocumentScreen | None = None,
    ) -> None:
        self.store = store
        self.mapper = mapper
        self.chunker = chunker
        self.embedder = embedder
        self._refetch = refetch
        self._refetch_all = refetch_all  # a row filter: re-read rows through it
        self.screen = screen  # None: chunks are not scanned (the guard is off)

    def apply(
        self,
        changes: Sequence[DocChange],
        epoch: int,
        position: Position | None,
        *,
        filtered: bool = False,
    ) -> ApplyStats:
        """Write `changes` (and move the source to `position`) in one store transaction.
        `filtered`: the rows were read through the row filter already (backfill)."""
        ops, remove_all = collapse(changes)
        stats = ApplyStats(truncates=int(remove_all))
        batch = WriteBatch(remove_all=remove_all)
        upserts = [op for op in ops.values() if isinstance(op, Upsert)]
        batch.removes = [key_text(op.key) for op in ops.values() if isinstance(op, Remove)]
        plans = self._resolve(
            upserts, remove_all, batch, refetch_all=self._refetch_all and not filtered
        )
        plans = self._skip_excluded(plans, batch)
        self._embed(plans, batch, stats)
        self._screen(plans, batch, stats)
        batch.documents = [
            (p.document, self._chunk_rows(p)) for p in plans if p.document.key not in batch.failures
        ]
        self.store.write(batch, epoch, position)
        stats.upserts = len(batch.documents) + len(batch.metadata_only)
        stats.metadata_only = len(batch.metadata_only)
        stats.removes = len(batch.removes)
        stats.failures = len(batch.failures)
        stats.chunks = sum(len(chunks) for _, chunks in batch.documents)
        return stats

    # --- resolve -----------------------------------------------------------------------------

    def _resolve(
        self, upserts: list[Upsert], remove_all: bool, batch: WriteBatch, *, refetch_all: bool
    ) -> list[_TextPlan]:
        """Sort upserts into metadata-only rows (into `batch`) and documents to chunk."""
        stored = {} if remove_all else self.store.documents([key_text(u.key) for u in upserts])
        plans: list[_TextPlan] = []
        pending: list[Upsert] = []
        for upsert in upserts:
            if refetch_all or not self._sort(upsert, stored, batch, plans):
                pending.append(upsert)
        if pending:
            fetched = {
                u.key: u for u in map(self.mapper.upsert, self._refetch([u.key for u in pending]))
            }
            for upsert in pending:
                current = fetched.get(upsert.key)
                if current is None:  # gone, or no longer passes the row filter
                    batch.removes.append(key_text(upsert.key))
                else:
                    assert self._sort(current, stored, batch, plans)
        return plans

    def _skip_excluded(self, plans: list[_TextPlan], batch: WriteBatch) -> list[_TextPlan]:
        """Turn rows of excluded tenants into removals before anything is embedded."""
        if not plans and not batch.metadata_only:
            return plans
        excluded = self.store.excluded_tenants()
        if not excluded:
            return plans
        dropped = [d for d in batch.metadata_only if d.tenant in excluded]
        dropped += [p.document for p in plans if p.document.tenant in excluded]
        batch.metadata_only = [d for d in batch.metadata_only if d.tenant not in excluded]
        batch.removes.extend(d.key for d in dropped)
        return [p for p in plans if p.document.tenant not in excluded]

    def _sort(
        self,
        upsert: Upsert,
        stored: dict[str, StoredDocument],
        batch: WriteBatch,
        plans: list[_TextPlan],
    ) -> bool:
        """File one upsert; False when it needs the row from the primary first."""
        key = key_text(upsert.key)
        old = stored.get(key)
        if upsert.tenant is None:  # no tenant: not retrievable by anyone, so not indexed
            batch.removes.append(key)
            return True
        row = _document_row(key, upsert, old)
        if row is None:
            return False
        if old is not None and row.text_hashes == old.text_hashes:
            batch.metadata_only.append(row)
            return True
        if not upsert.complete:
            return False
        texts = {c: v for c, v in upsert.texts.items() if not isinstance(v, Unchanged)}
        plans.append(_TextPlan(row, self.chunker.chunk(self.mapper.render(texts))))
        return True

    # --- embed -------------------------------------------------------------------------------

    def _embed(self, plans: list[_TextPlan], batch: WriteBatch, stats: ApplyStats) -> None:
        """Give every planned chunk a vector: reused by content hash from the documents this
        batch rewrites or removes (so a changed key keeps its vectors), else embedded."""
        known: dict[bytes, str] = {}  # a vector moves with its text, even to another key
        if plans:
            keys = [p.document.key for p in plans] + batch.removes
            for vectors in self.store.vectors(keys).values():
                known.update(vectors)
        wanted: dict[bytes, str] = {}
        wanted_by: dict[bytes, str] = {}  # content hash -> the first document that needs it
        for plan in plans:
            for chunk in plan.chunks:
                if chunk.content_hash in known:
                    plan.vectors[chunk.content_hash] = known[chunk.content_hash]
                    stats.reused += 1
                    stats.reused_by_key[plan.document.key] += 1
                else:
                    wanted[chunk.content_hash] = chunk.text
                    wanted_by.setdefault(chunk.content_hash, plan.document.key)
        computed = self._compute(wanted, plans, batch)
        stats.embedded += len(computed)
        stats.embedded_by_key.update(wanted_by[h] for h in computed)
        for plan in plans:
            for chunk in plan.chunks:
                if chunk.content_hash in computed:
                    plan.vectors[chunk.content_hash] = computed[chunk.content_hash]

    def _compute(
        self, wanted: dict[bytes, str], plans: list[_TextPlan], batch: WriteBatch
    ) -> dict[bytes, str]:
        """Embed `wanted` in one micro-batched call; if that fails, document by document so
        one bad row goes to the dead letters and the others are still written."""
        if not wanted:
            return {}
        try:
            return self._run_model(wanted)
        except Exception as exc:  # any model/endpoint failure: isolate the rows it hits
            logger.warning("embedding %d chunks failed (%s); retrying per row", len(wanted), exc)
        computed: dict[bytes, str] = {}
        for plan in plans:
            mine = {c.content_hash: c.text for c in plan.chunks if c.content_hash in wanted}
            try:
                computed.update(self._run_model(mine))
            except Exception as exc:  # recorded as a dead letter, retried later
                error = f"{type(exc).__name__}: {exc}"
                batch.failures[plan.document.key] = DeadLetter(plan.document.tenant, error)
        return computed

    def _run_model(self, texts: dict[bytes, str]) -> dict[bytes, str]:
        if not texts:
            return {}
        vectors = self.embedder.embed_sync(list(texts.values()))
        return {h: vector_text(v) for h, v in zip(texts, vectors, strict=True)}

    # --- screen ------------------------------------------------------------------------------

    def _screen(self, plans: list[_TextPlan], batch: WriteBatch, stats: ApplyStats) -> None:
        """Give every planned chunk the guard's verdict: the stored one for a text these
        documents (or those this batch removes) already had, else a fresh scan."""
        screen = self.screen
        plans = [p for p in plans if p.document.key not in batch.failures]
        if screen is None or not plans:
            return
        known = self.store.verdicts([p.document.key for p in plans] + batch.removes)
        for plan in plans:
            tenant = plan.document.tenant
            if not screen.scans(tenant):
                continue
            try:
                for chunk in plan.chunks:
                    verdict = self._verdict(screen, tenant, chunk, known, stats)
                    plan.verdicts[chunk.content_hash] = verdict
            except Exception as exc:  # a detector failure: this row waits as a dead letter
                error = f"guard scan failed: {type(exc).__name__}: {exc}"
                batch.failures[plan.document.key] = DeadLetter(tenant, error)

    def _verdict(
        self,
        screen: DocumentScreen,
        tenant: str,
        chunk: Chunk,
        known: dict[bytes, ChunkVerdict],
        stats: ApplyStats,
    ) -> ChunkVerdict:
        stored = known.get(chunk.content_hash)
        if stored is not None:
            return screen.judge(tenant, stored)
        verdict = known[chunk.content_hash] = screen.scan(tenant, chunk.text)
        stats.scanned += 1
        stats.flagged += verdict.flagged
        stats.quarantined += verdict.quarantined
        return verdict

    def _chunk_rows(self, plan: _TextPlan) -> list[ChunkRow]:
        return [
            ChunkRow(
                c.number,
                c.text,
                c.content_hash,
                plan.vectors[c.content_hash],
                plan.verdicts.get(c.content_hash),
            )
            for c in plan.chunks
        ]


def _document_row(key: str, upsert: Upsert, old: StoredDocument | None) -> DocumentRow | None:
    """The document as it will be stored, unsent values taken from the index; None when a
    value is unknown to both (the row must be read from the primary)."""
    if old is None and not _all_sent(upsert):
        return None
    tenant = old.tenant if isinstance(upsert.tenant, Unchanged) and old else upsert.tenant
    metadata = {
        c: (old.metadata.get(c) if old and v is UNCHANGED else v)
        for c, v in upsert.metadata.items()
    }
    hashes: dict[str, str] = {}
    for column, value in upsert.texts.items():
        if isinstance(value, Unchanged):
            if old is None or column not in old.text_hashes:
                return None
            hashes[column] = old.text_hashes[column]
        else:
            hashes[column] = text_hash(value)
    assert isinstance(tenant, str)
    return DocumentRow(key, tenant, metadata, hashes)


def _all_sent(upsert: Upsert) -> bool:
    values = [upsert.tenant, *upsert.metadata.values(), *upsert.texts.values()]
    return not any(v is UNCHANGED for v in values)
