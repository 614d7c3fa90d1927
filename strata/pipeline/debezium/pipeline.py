"""One Debezium source end to end: fetch → decode → group → map → Indexer.apply → ack.

`DebeziumPipeline.run(stop)` is the loop, the broker-fed twin of `source.SourcePipeline`:

    open()                       strata's store, the index state, the broker's durable reader
    while not stop: step()       fetched events → whole transactions → one index write → ack

Same rules as the direct source: the same `Mapper`, `Indexer` (only changed chunks are
embedded) and `IndexStore.write`, which records the broker position of the last transaction
it applies in the same store transaction. Messages are acknowledged only after that write, so
a crash anywhere loses nothing; events delivered again are recognised by the stored position
(and are idempotent upserts anyway).

What differs, because strata does not read the primary here:

- the backfill is Debezium's snapshot: its reads (op `r`) open a new epoch, and at the table's
  last snapshot row (or the first streamed change after the snapshot) documents the snapshot
  did not rewrite are dropped, as `strata pipeline backfill` does;
- a row whose text cannot be rebuilt — a text column arrived as the unavailable-value
  placeholder while another changed, and the index does not hold it — goes to the dead-letter
  table (the fix: REPLICA IDENTITY FULL on the table, or Debezium's reselect post processor);
  so does a malformed event; neither blocks the stream, and a later full change of the row
  clears its dead letter;
- column types come from the events (their schemas, or the JSON kinds), not the catalog.

Run with an `Ownership` (several workers, `strata.pipeline.ownership`), writes run on the
lock's session, as for the direct source. The durable reader is shared by name, so reads are
fenced too: the lock's session is asked before every fetch (a worker that lost the source takes
no more messages), and a new owner waits out the longest fetch a former owner may still have
open before it opens the broker. Messages the former owner took and never acknowledged are
then pending, and the broker hands them to the new owner first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import psycopg

from strata.config import PipelineSettings, PipelineSourceSettings
from strata.pipeline.changes import Row, RowChange
from strata.pipeline.chunker import Chunker
from strata.pipeline.debezium.broker import Broker, BrokerMessage, durable_name, make_broker
from strata.pipeline.debezium.events import ChangeEvent, Event, Ignored, MalformedEvent, decode
from strata.pipeline.debezium.grouping import Batch, Grouper, SnapshotBatch, TransactionBatch
from strata.pipeline.embedder import Embedder
from strata.pipeline.errors import PipelineError
from strata.pipeline.index import DeadLetter, IndexStore, Position, WriteBatch
from strata.pipeline.indexer import ApplyStats, Indexer
from strata.pipeline.mapping import DocChange, Key, Mapper, RemoveAll, Upsert, key_text
from strata.pipeline.metrics import METRICS, PipelineMetrics
from strata.pipeline.ownership import Ownership
from strata.pipeline.screen import DocumentScreen

logger = logging.getLogger(__name__)
SETTLE_S = 0.1  # how long a held transaction waits for more of its events once the stream idles
POLL_S = 0.5  # how long `run`'s fetch waits for the first event
HANDOVER_WAIT_S = POLL_S + 0.5  # longer than any fetch a former owner may still have open
BODY_SHOWN = 300  # characters of a malformed message kept in its dead letter


class RowsUnavailable(Exception):
    """The indexer needs rows re-read from the primary, which this source cannot do."""

    def __init__(self, keys: Sequence[Key]) -> None:
        super().__init__(f"{len(keys)} rows need the primary")
        self.keys = frozenset(keys)


class DebeziumPipeline:
    """Streams one `kind: debezium` source into the index. Not thread-safe: one thread calls
    run()/step()."""

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
        broker: Broker | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        assert source.kind == "debezium" and source.broker is not None
        self.source = source
        self.settings = settings
        self.broker = broker or make_broker(source)
        self._store_conninfo = store_conninfo
        self._embedder = embedder
        self._chunker = chunker
        self._metrics = metrics
        self._screen = screen  # the guard's scan of each new chunk text; None: not scanned
        self._store_conn: psycopg.Connection | None = None
        self._ownership = ownership  # its connection holds the source's lock: writes run on it
        self._table = _schema_and_name(source.table)
        self._types: dict[str, int] = {}  # column -> type OID, learned from events (the mapper's)
        self._grouper = Grouper(settings.group_transactions)
        self._last_seen = 0  # highest position handed to the grouper in this run
        self._snapshot_rows = 0

    # --- setup ---------------------------------------------------------------------------------

    def open(self) -> None:
        """Connect to strata's store and the broker; resume after the recorded position."""
        self._store_conn = (
            self._ownership.conn
            if self._ownership is not None
            else psycopg.connect(self._store_conninfo, autocommit=True)
        )
        self.store = IndexStore.for_source(
            self._store_conn, self.source, self.settings, self._embedder
        )
        self._check_reader()
        self.state = self.store.ensure_ready(self.reader_name)
        self.mapper = Mapper(self.source, tuple(self.source.primary_key), self._types)
        self.indexer = Indexer(
            self.store,
            self.mapper,
            self._chunker,
            self._embedder,
            self._unavailable,
            screen=self._screen,
        )
        if self._ownership is not None:
            time.sleep(HANDOVER_WAIT_S)
        self.broker.open(self.state.applied_lsn)

    @property
    def reader_name(self) -> str:
        """What `pipeline_sources.slot_name` records: broker, stream and durable reader."""
        assert self.source.broker is not None
        broker = self.source.broker
        return f"{broker.kind}:{broker.stream}/{durable_name(self.source)}"

    def _check_reader(self) -> None:
        """Positions are a stream's own: refuse an index whose position is of another one."""
        assert self._store_conn is not None
        row = self._store_conn.execute(
            "SELECT slot_name FROM pipeline_sources WHERE name = %s", (self.source.name,)
        ).fetchone()
        stream = self.reader_name.split("/")[0]  # the durable may change: same positions
        if row is not None and row[0].split("/")[0] != stream:
            raise PipelineError(
                f"pipeline source '{self.source.name}' holds an index whose position is of "
                f"{row[0]}, not of {stream} (kind, broker.kind, broker.stream): set them back, "
                "or give the source a new name (its index is then built from Debezium's "
                "snapshot) and delete the old one's documents"
            )

    # --- the loop ------------------------------------------------------------------------------

    def run(self, stop: threading.Event, *, poll_s: float = POLL_S) -> None:
        """open → step until `stop` is set → close."""
        try:
            self.open()
            while not stop.is_set():
                self.step(poll_s)
        finally:
            self.close()

    def step(self, timeout_s: float) -> ApplyStats | None:
        """Fetch what the broker has (waiting up to `timeout_s`) and apply every batch it
        completes; None when nothing came and nothing is held."""
        assert self.source.broker is not None
        wait = SETTLE_S if self._grouper.holding else timeout_s
        if self._ownership is not None:  # fails once the lock's session has ended
            self._ownership.conn.execute("SELECT 1")
        messages = self.broker.fetch(self.source.broker.batch, wait)
        for message in messages:
            if message.position > self._last_seen:
                self._last_seen = message.position
                self._grouper.add(message, self._decode(message))
            elif message.position <= self.state.applied_lsn:  # indexed; its ack was lost
                self.broker.ack([message])
            # else: delivered again while still held here (acknowledged with its batch)
        batches = self._grouper.take(flush=not messages)
        stats = ApplyStats()
        if not batches:
            return stats if messages else None
        for batch in batches:
            stats.add(self.apply(batch))
        return stats

    def apply(self, batch: Batch) -> ApplyStats:
        """Index one batch (one store write, dead letters aside), then acknowledge it."""
        self._dead_letter_events(batch.malformed)
        if isinstance(batch, SnapshotBatch):
            stats = self._apply_snapshot(batch)
        else:
            stats = self._apply_transactions(batch)
        self.broker.ack(batch.messages)
        stats.failures += len(batch.malformed)
        self._count(stats)
        return stats

    def _apply_transactions(self, batch: TransactionBatch) -> ApplyStats:
        fresh = [t for t in batch.transactions if t.end_lsn > self.state.applied_lsn]
        if not fresh:  # nothing, or all indexed before a crash
            return ApplyStats()
        if self._snapshotting():  # streaming follows a finished snapshot
            self._finish_snapshot(self.state.applied_lsn)
        changes = [c for t in fresh for change in t.changes for c in self.mapper.changes(change)]
        position = Position(fresh[-1].end_lsn, tuple(t.commit_time for t in fresh))
        stats = self._index(changes, position)
        searchable = datetime.now(UTC)
        freshness = self._metrics.freshness.labels(self.source.name)
        for commit_time in position.commit_times:
            freshness.observe(max(0.0, (searchable - commit_time).total_seconds()))
        self.state = replace(self.state, applied_lsn=position.end_lsn)
        return stats

    def _apply_snapshot(self, batch: SnapshotBatch) -> ApplyStats:
        rows = [change for position, change in batch.rows if position > self.state.applied_lsn]
        if rows and not self._snapshotting():
            self.store.start_backfill()
            self.state = self.store.state()
            self._snapshot_rows = 0
        stats = self._index([self.mapper.upsert(c.new) for c in rows if c.new is not None], None)
        self._snapshot_rows += len(rows)
        if batch.ends and self._snapshotting():
            self._finish_snapshot(batch.messages[-1].position)
        return stats

    def _snapshotting(self) -> bool:
        """A snapshot opened an epoch and has not finished it."""
        return self.state.epoch > 0 and self.state.backfilled_at is None

    def _finish_snapshot(self, position: int) -> None:
        stale = self.store.finish_backfill(self.state.epoch, self._snapshot_rows, position)
        logger.info(
            "pipeline source '%s': Debezium snapshot indexed (%d rows read here), %d stale "
            "documents removed",
            self.source.name,
            self._snapshot_rows,
            stale,
        )
        self.state = self.store.state()

    # --- decoding and dead letters -------------------------------------------------------------

    def _decode(self, message: BrokerMessage) -> Event | MalformedEvent:
        assert self.source.broker is not None
        try:
            event = decode(message.data, self.source.broker.placeholder)
        except MalformedEvent as exc:
            return exc
        if not isinstance(event, ChangeEvent):
            return event
        if (event.origin.schema, event.origin.table) != self._table:
            return Ignored(f"an event of {event.origin.schema}.{event.origin.table}")
        problem = self._problem(event.change) if isinstance(event.change, RowChange) else None
        if problem is not None:
            return problem
        self._types.update(event.types)
        return event

    def _problem(self, change: RowChange) -> MalformedEvent | None:
        """Why this row change cannot be mapped as configured, if it cannot."""
        row = change.new if change.new is not None else change.old
        assert row is not None
        keys = [c for c in self.mapper.key_columns if not isinstance(row.get(c), str)]
        if keys:
            return MalformedEvent(
                f"no value for key column(s) {keys} (primary_key): name the table's key columns",
                row,
            )
        missing = [c for c in self.mapper.columns if change.new is not None and c not in row]
        if missing:
            return MalformedEvent(
                f"the event has no column(s) {missing}, which the source maps (text_columns, "
                "template, metadata_columns, tenant_column): check those names against the "
                "table and Debezium's column.include.list / column.exclude.list",
                row,
            )
        return None

    def _unavailable(self, keys: Sequence[Key]) -> list[Row]:
        """The indexer's refetch: there is no primary to re-read rows from."""
        raise RowsUnavailable(keys)

    def _index(self, changes: list[DocChange], position: Position | None) -> ApplyStats:
        """`Indexer.apply`; rows it would have to re-read from the primary are dead-lettered
        and the rest written."""
        try:
            return self.indexer.apply(changes, self.state.epoch, position)
        except RowsUnavailable as exc:
            failures = {key_text(k): self._unavailable_letter(k, changes) for k in exc.keys}
            self.store.write(WriteBatch(failures=failures), self.state.epoch, None)
            kept = [c for c in changes if isinstance(c, RemoveAll) or c.key not in exc.keys]
            stats = self.indexer.apply(kept, self.state.epoch, position)
            stats.failures += len(failures)
            return stats

    def _unavailable_letter(self, key: Key, changes: list[DocChange]) -> DeadLetter:
        upsert = next(c for c in reversed(changes) if isinstance(c, Upsert) and c.key == key)
        unsent = [c for c, v in upsert.texts.items() if not isinstance(v, str | None)]
        return DeadLetter(
            upsert.tenant if isinstance(upsert.tenant, str) else "",
            f"text column(s) {unsent} arrived as Debezium's unavailable-value placeholder (an "
            f"unchanged TOASTed value) and the index cannot rebuild the text without them: "
            f"ALTER TABLE {self.source.table} REPLICA IDENTITY FULL (Debezium then sends them), "
            "or add Debezium's reselect-columns post processor; the row is indexed again at "
            "its next full change",
        )

    def _dead_letter_events(self, malformed: list[tuple[BrokerMessage, MalformedEvent]]) -> None:
        if not malformed:
            return
        failures = {self._letter_key(m, e): self._event_letter(m, e) for m, e in malformed}
        self.store.write(WriteBatch(failures=failures), self.state.epoch, None)
        for message, event in malformed:
            logger.warning(
                "pipeline source '%s': event #%d dead-lettered: %s",
                self.source.name,
                message.position,
                event.reason,
            )

    def _letter_key(self, message: BrokerMessage, event: MalformedEvent) -> str:
        """The row's key when the event names one (a later change of the row clears the
        letter), else `@<broker position>`."""
        row = event.row or {}
        values = [row.get(c) for c in self.mapper.key_columns]
        if all(isinstance(v, str) for v in values):
            return key_text(tuple(v for v in values if isinstance(v, str)))
        return f"@{message.position}"

    def _event_letter(self, message: BrokerMessage, event: MalformedEvent) -> DeadLetter:
        row = event.row or {}
        tenant = self.source.tenant or row.get(self.source.tenant_column or "")
        body = (message.data or b"").decode("utf-8", "replace")[:BODY_SHOWN]
        return DeadLetter(
            tenant if isinstance(tenant, str) else "",
            f"Debezium event #{message.position}: {event.reason}; event: {body}",
        )

    def _count(self, stats: ApplyStats) -> None:
        self._metrics.count(self.source.name, stats)

    # --- teardown ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the broker and the store connection unless it is the ownership's
        (unacknowledged events are redelivered)."""
        self.broker.close()
        conn, self._store_conn = self._store_conn, None
        owned = self._ownership.conn if self._ownership is not None else None
        if conn is not None and conn is not owned and not conn.closed:
            conn.close()


def _schema_and_name(table: str) -> tuple[str, str]:
    schema, _, name = table.rpartition(".")
    return schema or "public", name
