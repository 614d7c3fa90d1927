"""One CDC source end to end: prepare → backfill (once) → stream → apply → confirm.

`SourcePipeline.run(stop)` is the loop:

    open()                       check the primary and the table, publication, index state
    backfill() if needed         new slot + exported snapshot; every row indexed as of it
    stream.start()               from the slot's confirmed position
    while not stop: step()       waiting transactions → map → Indexer.apply → confirm the last

The confirmed LSN moves only after the index write for that transaction has committed (and
the write records the same LSN in the store), so a crash anywhere loses nothing; replayed
transactions are recognised by that stored LSN and are idempotent upserts anyway.

Run with an `Ownership` (`strata.pipeline.ownership`, as `PipelineService` does), every store
statement runs on the connection that holds the source's ownership lock, and `open()` first
terminates a former owner's walsender still holding the slot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from tqdm import tqdm

from strata.config import PipelineSettings, PipelineSourceSettings
from strata.pipeline.changes import Change, Transaction
from strata.pipeline.chunker import Chunker
from strata.pipeline.embedder import Embedder
from strata.pipeline.errors import PipelineError
from strata.pipeline.index import IndexStore, Position
from strata.pipeline.indexer import ApplyStats, Indexer
from strata.pipeline.mapping import Mapper, Remove, Upsert, parse_key
from strata.pipeline.metrics import METRICS, PipelineMetrics
from strata.pipeline.ownership import Ownership
from strata.pipeline.primary import (
    RowReader,
    check_wal_level,
    describe_table,
    drop_slot,
    ensure_publication,
    evict_slot_reader,
    key_columns,
    slot_status,
)
from strata.pipeline.replication import ReplicationStream
from strata.pipeline.screen import DocumentScreen

logger = logging.getLogger(__name__)
LAG_CHECK_S = 5.0


def slot_name(source: str) -> str:
    """The publication and the replication slot of a source are both strata_<name>."""
    return f"strata_{source}"


@dataclass(frozen=True)
class BackfillResult:
    rows: int
    stale_removed: int
    seconds: float
    stats: ApplyStats


class SourcePipeline:
    """Streams one source into the index. Not thread-safe: one thread calls run()/step()."""

    def __init__(
        self,
        source: PipelineSourceSettings,
        settings: PipelineSettings,
        store_conninfo: str,
        embedder: Embedder,
        chunker: Chunker,
        *,
        metrics: PipelineMetrics = METRICS,
        screen: DocumentScreen | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        self.source = source
        self.settings = settings
        self.slot = slot_name(source.name)
        self._ownership = ownership  # None: the caller sees to it that no one else streams
        self._store_conninfo = store_conninfo
        self._embedder = embedder
        self._chunker = chunker
        self._metrics = metrics
        self._screen = screen  # the guard's scan of each new chunk text; None: not scanned
        self._primary: psycopg.Connection | None = None
        self._store_conn: psycopg.Connection | None = None
        self._stream: ReplicationStream | None = None
        self._streaming = False
        self._next_lag_check = 0.0

    # --- setup ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Connect to both databases, check the source table, ensure its publication."""
        dsn = self.source.dsn.get_secret_value()
        self._primary = psycopg.connect(dsn, autocommit=True)  # failures are transient: retried
        check_wal_level(self._primary)
        self._evict_former_owner()
        self.table = describe_table(self._primary, self.source.table)
        key = key_columns(self.table, self.source)
        ensure_publication(self._primary, self.slot, self.table)
        self.mapper = Mapper(self.source, key, self.table.column_oids)
        self.reader = RowReader(
            self._primary, self.table, self.mapper.columns, key, self.source.row_filter
        )
        self._store_conn = self._connect_store()
        self.store = IndexStore.for_source(
            self._store_conn, self.source, self.settings, self._embedder
        )
        self.state = self.store.ensure_ready(self.slot)
        self.indexer = Indexer(
            self.store,
            self.mapper,
            self._chunker,
            self._embedder,
            self.reader.fetch,
            refetch_all=self.source.row_filter is not None,
            screen=self._screen,
        )

    def _evict_former_owner(self) -> None:
        assert self._primary is not None
        if self._ownership is None:
            return
        pid = evict_slot_reader(self._primary, self.slot)
        if pid is not None:
            logger.warning(
                "pipeline source '%s': terminated walsender %d, a former owner's stream of slot "
                "%s (this worker, %s, owns the source now)",
                self.source.name,
                pid,
                self.slot,
                self._ownership.worker,
            )

    def _connect_store(self) -> psycopg.Connection:
        """The ownership's connection (its lock fences every write), else one of our own."""
        if self._ownership is not None:
            return self._ownership.conn
        return psycopg.connect(self._store_conninfo, autocommit=True)

    def needs_backfill(self) -> bool:
        """No finished backfill, or the slot it started is gone (a gap would follow)."""
        assert self._primary is not None, "open() first"
        state = self.store.state()
        if state.model not in (None, self._embedder.model) and state.backfilled_at is not None:
            raise PipelineError(
                f"pipeline source '{self.source.name}' was indexed with {state.model}, not "
                f"{self._embedder.model} (pipeline.embedder): run `strata pipeline reindex "
                f"--source {self.source.name}` to re-embed its stored chunks beside the old "
                "vectors (which keep serving until it switches), or set pipeline.embedder back"
            )
        return state.backfilled_at is None or slot_status(self._primary, self.slot) is None

    def backfill(self, *, progress: bool = True) -> BackfillResult:
        """Re-create the slot, index every row of its exported snapshot, drop documents the
        snapshot no longer has. Streaming (`start`) continues exactly after the snapshot."""
        assert self._primary is not None, "open() first"
        self._close_stream()
        drop_slot(self._primary, self.slot)
        started = time.monotonic()
        self._stream = self._new_stream()
        snapshot = self._stream.create_slot()
        epoch = self.store.start_backfill()
        total, batches = self.reader.snapshot(snapshot.snapshot)
        stats = ApplyStats()
        with tqdm(
            total=total, unit="rows", desc=f"backfill {self.source.name}", disable=not progress
        ) as bar:
            for rows in batches:
                upserts = [self.mapper.upsert(r) for r in rows]
                stats.add(self.indexer.apply(upserts, epoch, None, filtered=True))
                bar.update(len(rows))
        stale = self.store.finish_backfill(epoch, total, snapshot.consistent_lsn)
        self._count(stats)
        self.state = self.store.state()
        return BackfillResult(total, stale, time.monotonic() - started, stats)

    def start(self) -> None:
        """Start streaming from the slot's confirmed position (backfilling first if needed)."""
        if self.needs_backfill():
            self.backfill()
        if self._stream is None:
            self._stream = self._new_stream()
        self._stream.start()
        self._streaming = True
        self.state = self.store.state()

    # --- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, poll_s: float = 0.5) -> None:
        """open → start → step until `stop` is set → close."""
        try:
            self.open()
            self.start()
            while not stop.is_set():
                self.step(poll_s)
        finally:
            self.close()

    def step(self, timeout_s: float) -> ApplyStats | None:
        """Apply the next transaction together with those already waiting behind it, up to
        `pipeline.group_transactions` (None when none came within `timeout_s`)."""
        assert self._stream is not None and self._streaming, "start() first"
        first = self._stream.next_transaction(timeout_s)
        if first is None:
            self.on_idle()
            return None
        group = [first]
        while len(group) < self.settings.group_transactions:
            waiting = self._stream.next_transaction(0.0)
            if waiting is None:
                break
            group.append(waiting)
        return self.apply(group)

    def apply(self, transactions: Sequence[Transaction]) -> ApplyStats:
        """Index source transactions (in commit order) as one write, then confirm the last.

        One write means one embedding batch and one store transaction for all of them: under a
        steady stream the per-write costs (a model call, a commit) are paid once per group, not
        once per transaction. Each transaction still gets its own freshness sample."""
        assert self._stream is not None and transactions
        fresh = [t for t in transactions if t.end_lsn > self.state.applied_lsn]
        end_lsn = transactions[-1].end_lsn
        if not fresh:  # all indexed before a crash
            self._stream.confirm(end_lsn)
            return ApplyStats()
        changes = [
            c
            for transaction in fresh
            for change in transaction.changes
            if self._ours(change)
            for c in self.mapper.changes(change)
        ]
        position = Position(end_lsn, tuple(t.commit_time for t in fresh))
        stats = self.indexer.apply(changes, self.state.epoch, position)
        searchable = datetime.now(UTC)
        freshness = self._metrics.freshness.labels(self.source.name)
        for commit_time in position.commit_times:
            freshness.observe(max(0.0, (searchable - commit_time).total_seconds()))
        self._count(stats)
        self._stream.confirm(end_lsn)
        return stats

    def on_idle(self) -> None:
        """Between transactions: retry due dead letters, confirm keepalive progress, lag."""
        assert self._stream is not None
        self.retry_dead_letters()  # asks the store first: a worker whose lock session has
        self._stream.confirm_idle()  # ended fails there and so confirms nothing more
        if time.monotonic() >= self._next_lag_check and self._primary is not None:
            self._next_lag_check = time.monotonic() + LAG_CHECK_S
            status = slot_status(self._primary, self.slot)
            if status is not None and status.lag_bytes is not None:
                self._metrics.slot_lag.labels(self.source.name).set(status.lag_bytes)

    def retry_dead_letters(self) -> ApplyStats:
        """Re-read due dead-lettered rows from the primary and index them again."""
        keys = self.store.due_dead_letters(self.settings.max_attempts)
        if not keys:
            return ApplyStats()
        width = len(self.mapper.key_columns)
        wanted = [parse_key(k, width) for k in keys]
        rows = {u.key: u for u in map(self.mapper.upsert, self.reader.fetch(wanted))}
        changes: list[Upsert | Remove] = [rows.get(k) or Remove(k) for k in wanted]
        stats = self.indexer.apply(changes, self.state.epoch, None)
        self._count(stats)
        return stats

    def _ours(self, change: Change) -> bool:
        relation = change.relation
        return (relation.namespace, relation.name) == (self.table.schema, self.table.name)

    def _count(self, stats: ApplyStats) -> None:
        self._metrics.count(self.source.name, stats)

    def _new_stream(self) -> ReplicationStream:
        return ReplicationStream(self.source.dsn.get_secret_value(), self.slot, self.slot)

    # --- teardown ------------------------------------------------------------------------------

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
            self._streaming = False

    def close(self) -> None:
        """Close every connection this pipeline opened (the slot stays on the primary; the
        ownership's connection stays with its `SourceLock`)."""
        self._close_stream()
        owned = self._ownership.conn if self._ownership is not None else None
        for conn in (self._primary, self._store_conn):
            if conn is not None and conn is not owned and not conn.closed:
                conn.close()
        self._primary = self._store_conn = None
