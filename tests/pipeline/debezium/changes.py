"""Changes to the primary's tickets table, each published as Debezium would publish it.

`Changes.commit(*ops)` runs the operations in one transaction on the primary (so the direct
source streams them through pgoutput) and publishes the events Debezium's PostgreSQL connector
emits for that transaction: `c` with the row as committed, `u` with `before` null (REPLICA
IDENTITY DEFAULT) and the unavailable-value placeholder for columns the caller marks as
unchanged TOASTed values, `d` with the key in `before` followed by a tombstone, a primary key
change as `d` + tombstone + `c`, `t` for a truncate — all with the transaction's id, a
growing LSN and the commit time. `snapshot()` publishes the table's rows as snapshot reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import psycopg

from tests.pipeline.debezium.debezium_format import PLACEHOLDER, EventWriter, Tx

Op = Callable[[psycopg.Connection, Tx], list[bytes]]
NULL_ROW = {"org": None, "title": None, "body": None, "status": None, "priority": None}


class Publisher(Protocol):
    """Debezium Server's sink: puts event values on the broker, in order."""

    def publish(self, bodies: Sequence[bytes]) -> list[int]:
        """The broker position of each."""


class Changes:
    """Applies changes to the primary and publishes their Debezium events."""

    def __init__(self, primary_dsn: str, publisher: Publisher, writer: EventWriter) -> None:
        self.primary_dsn = primary_dsn
        self.publisher = publisher
        self.writer = writer
        self._lsn = 20_000_000
        self.published: list[int] = []  # stream sequences, in order
        self.commits = 0  # source transactions (snapshot aside)

    def snapshot(self) -> None:
        """Every current row as a snapshot read; the last one marked `last`."""
        with psycopg.connect(self.primary_dsn) as conn:
            rows = [r[0] for r in conn.execute("SELECT row_to_json(t) FROM tickets t ORDER BY id")]
            txid = int(conn.execute("SELECT txid_current()").fetchone()[0])  # type: ignore[index]
        tx = self._tx(txid)
        marks = ["true"] * len(rows)
        marks[0], marks[-1] = "first", "last"  # one row: just "last"
        self.publish([self.writer.read(r, tx, m) for r, m in zip(rows, marks, strict=True)])

    def commit(self, *ops: Op) -> None:
        """Run `ops` in one primary transaction, then publish its events."""
        events: list[bytes] = []
        with psycopg.connect(self.primary_dsn) as conn:
            txid = int(conn.execute("SELECT txid_current()").fetchone()[0])  # type: ignore[index]
            tx = self._tx(txid)
            for op in ops:
                events += op(conn, tx)
        self.publish(events)
        self.commits += 1

    def publish(self, bodies: list[bytes]) -> None:
        self.published += self.publisher.publish(bodies)

    def _tx(self, txid: int) -> Tx:
        self._lsn += 4096
        return Tx(txid, self._lsn, int(time.time() * 1000))

    # --- operations ----------------------------------------------------------------------------

    def insert(self, **row: Any) -> Op:
        def run(conn: psycopg.Connection, tx: Tx) -> list[bytes]:
            names = ", ".join(row)
            conn.execute(
                f"INSERT INTO tickets ({names}) VALUES ({', '.join(['%s'] * len(row))})",
                list(row.values()),
            )
            return [self.writer.create(_row(conn, row["id"]), tx)]

        return run

    def update(self, key: int, *, toasted: tuple[str, ...] = (), **values: Any) -> Op:
        """UPDATE; `toasted` columns are unchanged TOASTed values Debezium cannot send."""

        def run(conn: psycopg.Connection, tx: Tx) -> list[bytes]:
            sets = ", ".join(f"{c} = %s" for c in values)
            conn.execute(f"UPDATE tickets SET {sets} WHERE id = %s", [*values.values(), key])
            after = _row(conn, key)
            after.update({c: PLACEHOLDER for c in toasted})
            return [self.writer.update(None, after, tx)]

        return run

    def delete(self, key: int) -> Op:
        def run(conn: psycopg.Connection, tx: Tx) -> list[bytes]:
            conn.execute("DELETE FROM tickets WHERE id = %s", (key,))
            return [self.writer.delete({"id": key, **NULL_ROW}, tx), self.writer.tombstone()]

        return run

    def rekey(self, key: int, new_key: int) -> Op:
        """A primary key change: Debezium sends a delete (and tombstone) and a create."""

        def run(conn: psycopg.Connection, tx: Tx) -> list[bytes]:
            conn.execute("UPDATE tickets SET id = %s WHERE id = %s", (new_key, key))
            after = _row(conn, new_key)
            return [
                self.writer.delete({"id": key, **NULL_ROW}, tx),
                self.writer.tombstone(),
                self.writer.create(after, tx),
            ]

        return run

    def truncate(self) -> Op:
        def run(conn: psycopg.Connection, tx: Tx) -> list[bytes]:
            conn.execute("TRUNCATE tickets")
            return [self.writer.truncate(tx)]

        return run


def _row(conn: psycopg.Connection, key: int) -> dict[str, Any]:
    row = conn.execute("SELECT row_to_json(t) FROM tickets t WHERE id = %s", (key,)).fetchone()
    assert row is not None
    return dict(row[0])
