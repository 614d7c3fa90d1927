"""The source table on the primary: created, loaded with COPY, and changed one row change per
transaction. Each change reports its transaction id, so the benchmark can find what the
pipeline did with exactly that transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple

import psycopg

from strata.bench.pipeline.workload import Change, Ticket

TABLE = "public.tickets"
COLUMNS = ("id", "org", "title", "body", "status", "priority")
DDL = """
CREATE TABLE tickets (
    id       bigint PRIMARY KEY,
    org      text NOT NULL,
    title    text NOT NULL,
    body     text NOT NULL,
    status   text NOT NULL,
    priority integer NOT NULL
)"""
XID_MODULUS = 2**32  # pgoutput carries the 32-bit xid; pg_current_xact_id() has an epoch


def create(conn: psycopg.Connection, tickets: Sequence[Ticket]) -> None:
    """Create `tickets` and load the rows in one COPY."""
    with conn.transaction():
        conn.execute(DDL)
        with (
            conn.cursor() as cursor,
            cursor.copy(f"COPY tickets ({', '.join(COLUMNS)}) FROM STDIN") as copy,
        ):
            for ticket in tickets:
                copy.write_row(astuple(ticket))


def apply(conn: psycopg.Connection, change: Change) -> int:
    """Commit `change` as its own transaction; its xid as the replication stream shows it."""
    with conn.transaction():
        conn.execute(*statement(change))
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    return int(row[0]) % XID_MODULUS


def statement(change: Change) -> tuple[str, tuple[object, ...]]:
    """The SQL for one change: an UPDATE sets only the columns that changed."""
    before, after = change.before, change.after
    if before is None:
        assert after is not None
        return (
            f"INSERT INTO tickets ({', '.join(COLUMNS)}) VALUES (%s, %s, %s, %s, %s, %s)",
            astuple(after),
        )
    if after is None:
        return "DELETE FROM tickets WHERE id = %s", (before.id,)
    changed = [
        (c, v)
        for c, v, old in zip(COLUMNS, astuple(after), astuple(before), strict=True)
        if v != old
    ]
    assert changed, f"an update that changes nothing: {change}"
    sets = ", ".join(f"{c} = %s" for c, _ in changed)
    return f"UPDATE tickets SET {sets} WHERE id = %s", (*(v for _, v in changed), after.id)
