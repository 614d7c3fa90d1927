"""The replication connection to the primary (psycopg2: psycopg 3 has no replication protocol).

`ReplicationStream` owns one `LogicalReplicationConnection` and one logical slot using the
built-in `pgoutput` plugin:

- `create_slot()` creates the slot and exports a snapshot consistent with the slot's start
  point. The snapshot stays importable (`SET TRANSACTION SNAPSHOT`) until this connection runs
  its next command, so the backfill imports it first and only then calls `start()`; every
  transaction committed after the snapshot is streamed, none before: no gap, no double.
- `start()` streams from the slot's confirmed position; `next_transaction()` returns whole
  committed transactions; `confirm(lsn)` reports them flushed so the primary may recycle WAL.
  The caller confirms only after the index write for that transaction has committed.
"""

from __future__ import annotations

import logging
import select
import time
from dataclasses import dataclass

import psycopg2
import psycopg2.errors
import psycopg2.extras

from strata.pipeline.changes import Transaction, TransactionAssembler
from strata.pipeline.pgoutput import decode, parse_lsn

logger = logging.getLogger(__name__)
SLOT_BUSY_WAIT_S = 15.0  # a killed consumer's walsender takes a moment to release the slot


@dataclass(frozen=True)
class SlotSnapshot:
    """A new slot: where streaming starts, and the snapshot that holds everything before."""

    slot: str
    consistent_lsn: int
    snapshot: str


class ReplicationStream:
    """One slot's pgoutput stream. Not thread-safe: one thread reads, applies and confirms."""

    def __init__(self, dsn: str, slot: str, publication: str) -> None:
        self.slot = slot
        self.publication = publication
        self._conn = psycopg2.connect(
            dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection
        )
        self._cursor = self._conn.cursor()
        self._assembler = TransactionAssembler()
        self._confirmed = 0
        self._pending = False  # a transaction was returned and not yet confirmed

    def create_slot(self) -> SlotSnapshot:
        """Create the slot and export its snapshot (valid until the next command here)."""
        self._cursor.execute(
            f"CREATE_REPLICATION_SLOT {self.slot} LOGICAL pgoutput (SNAPSHOT 'export')"
        )
        row = self._cursor.fetchone()
        assert row is not None
        return SlotSnapshot(row[0], parse_lsn(row[1]), row[2])

    def start(self, wait_s: float = SLOT_BUSY_WAIT_S) -> None:
        """Stream from the slot's confirmed position, waiting while a previous consumer's
        walsender still holds the slot."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._cursor.start_replication(
                    slot_name=self.slot,
                    decode=False,
                    options={"proto_version": "1", "publication_names": self.publication},
                )
                return
            except psycopg2.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def next_transaction(self, timeout_s: float) -> Transaction | None:
        """The next committed transaction, or None when none arrived within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            message = self._cursor.read_message()
            if message is not None:
                transaction = self._assembler.feed(decode(message.payload))
                if transaction is not None:
                    self._pending = True
                    return transaction
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            select.select([self._cursor], [], [], min(remaining, 1.0))

    def confirm(self, lsn: int) -> None:
        """Report everything up to `lsn` as durably processed (the slot may advance)."""
        self._pending = False
        if lsn > self._confirmed:
            self._confirmed = lsn
            self._cursor.send_feedback(flush_lsn=lsn, write_lsn=lsn, apply_lsn=lsn, force=True)

    def confirm_idle(self) -> None:
        """With every returned transaction confirmed, advance to the server's WAL end: nothing
        before it concerns this publication (keeps the slot from growing on a busy primary
        whose other tables change)."""
        wal_end = int(self._cursor.wal_end or 0)
        if not self._pending and not self._assembler.in_transaction:
            self.confirm(wal_end)

    def close(self) -> None:
        """Close the connection (the walsender exits; the slot stays)."""
        if not self._conn.closed:
            self._conn.close()
