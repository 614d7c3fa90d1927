"""Decoded broker messages → batches the pipeline applies as one index write each, in order.

Debezium publishes a source transaction as consecutive events with the same `source.txId`
(the PostgreSQL connector streams transactions whole, in commit order). `Grouper` rebuilds
them as the direct source's `Transaction`s — commit time from `source.ts_ms`, end position
the broker position of their last message — so a transaction is indexed all at once or not
at all. A transaction ends where the next one begins, at its transaction metadata END event
when the stream carries those, or when the stream goes quiet (`take(flush=True)`); until then
it is held, unacknowledged.

Snapshot reads (op `r`) have no transactions worth keeping (the whole snapshot shares one
txId): consecutive ones form a `SnapshotBatch`, cut wherever a fetch ends.

Every message belongs to exactly one batch and is acknowledged with it: messages with nothing
to apply (tombstones, other tables, boundaries) ride along, and malformed ones are listed for
the dead-letter table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from strata.pipeline.changes import Change, RowChange, Transaction
from strata.pipeline.debezium.broker import BrokerMessage
from strata.pipeline.debezium.events import Boundary, ChangeEvent, Event, MalformedEvent


@dataclass
class TransactionBatch:
    """Whole source transactions, oldest first, and every message they cover."""

    messages: list[BrokerMessage] = field(default_factory=list)
    transactions: list[Transaction] = field(default_factory=list)
    malformed: list[tuple[BrokerMessage, MalformedEvent]] = field(default_factory=list)


@dataclass
class SnapshotBatch:
    """Snapshot reads (position, row); `ends`: the table's last snapshot row is among them."""

    messages: list[BrokerMessage] = field(default_factory=list)
    rows: list[tuple[int, RowChange]] = field(default_factory=list)
    malformed: list[tuple[BrokerMessage, MalformedEvent]] = field(default_factory=list)
    ends: bool = False


Batch: TypeAlias = TransactionBatch | SnapshotBatch


@dataclass
class _OpenTransaction:
    tx_id: int | None
    events: list[ChangeEvent] = field(default_factory=list)
    messages: list[BrokerMessage] = field(default_factory=list)
    malformed: list[tuple[BrokerMessage, MalformedEvent]] = field(default_factory=list)


class Grouper:
    """Cuts the message stream into batches; `max_transactions` per transaction batch."""

    def __init__(self, max_transactions: int) -> None:
        self.max_transactions = max_transactions
        self._ready: list[Batch] = []
        self._current: Batch | None = None
        self._open: _OpenTransaction | None = None

    @property
    def holding(self) -> bool:
        """A transaction is waiting for its end."""
        return self._open is not None

    def add(self, message: BrokerMessage, event: Event | MalformedEvent) -> None:
        """Take the next message (in stream order) and what it decoded to."""
        if isinstance(event, ChangeEvent) and event.origin.snapshot != "no":
            self._add_snapshot_row(message, event)
        elif isinstance(event, ChangeEvent):
            self._add_change(message, event)
        else:
            if isinstance(event, Boundary) and self._open and self._open.tx_id != event.tx_id:
                self._close()  # BEGIN of the next transaction, or an END for another one
            self._attach(message, event)
            if isinstance(event, Boundary) and event.status == "END":
                self._close()

    def take(self, *, flush: bool) -> list[Batch]:
        """The batches complete so far; with `flush` the held transaction ends too."""
        if flush:
            self._close()
        self._finish()
        ready, self._ready = self._ready, []
        return ready

    # --- building ------------------------------------------------------------------------------

    def _add_snapshot_row(self, message: BrokerMessage, event: ChangeEvent) -> None:
        self._close()
        if not isinstance(self._current, SnapshotBatch):
            self._finish()
            self._current = SnapshotBatch()
        batch = self._current
        batch.messages.append(message)
        if isinstance(event.change, RowChange):
            batch.rows.append((message.position, event.change))
        if event.origin.snapshot == "last":
            batch.ends = True
            self._finish()

    def _add_change(self, message: BrokerMessage, event: ChangeEvent) -> None:
        tx_id = event.origin.tx_id
        if self._open is None or tx_id is None or self._open.tx_id != tx_id:
            self._close()
            self._open = _OpenTransaction(tx_id)
        self._open.events.append(event)
        self._open.messages.append(message)
        if tx_id is None:  # no transaction id: each event stands alone
            self._close()

    def _attach(self, message: BrokerMessage, event: Event | MalformedEvent) -> None:
        """A message with nothing to apply joins whatever is being built."""
        if self._open is not None:
            target: _OpenTransaction | Batch = self._open
        else:
            if self._current is None:
                self._current = TransactionBatch()
            target = self._current
        target.messages.append(message)
        if isinstance(event, MalformedEvent):
            target.malformed.append((message, event))

    def _close(self) -> None:
        """End the open transaction: into the current transaction batch."""
        open_, self._open = self._open, None
        if open_ is None:
            return
        batch = self._current
        if not isinstance(batch, TransactionBatch) or self._full(batch):
            self._finish()
            batch = self._current = TransactionBatch()
        batch.messages.extend(open_.messages)
        batch.malformed.extend(open_.malformed)
        if open_.events:
            batch.transactions.append(_transaction(open_))

    def _full(self, batch: TransactionBatch) -> bool:
        return len(batch.transactions) >= self.max_transactions

    def _finish(self) -> None:
        if self._current is not None:
            self._ready.append(self._current)
            self._current = None


def _transaction(open_: _OpenTransaction) -> Transaction:
    first, last = open_.events[0].origin, open_.events[-1].origin
    changes: tuple[Change, ...] = tuple(e.change for e in open_.events)
    return Transaction(
        xid=first.tx_id or 0,
        commit_time=first.commit_time,
        commit_lsn=last.lsn or 0,
        end_lsn=open_.messages[-1].position,  # the broker position: what the index records
        changes=changes,
    )
