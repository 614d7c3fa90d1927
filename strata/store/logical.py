"""An embedded PostgreSQL set up as a logical-replication primary: the "user's database" that
the pipeline's tests and `strata bench pipeline` stream from. Not used by strata at run time."""

from __future__ import annotations

from pathlib import Path

import psycopg

from strata.store.database import EmbeddedServer

PRIMARY_SETTINGS = (
    "ALTER SYSTEM SET wal_level = logical",
    "ALTER SYSTEM SET max_replication_slots = 32",
    "ALTER SYSTEM SET max_wal_senders = 32",
    "ALTER SYSTEM SET fsync = off",
    "ALTER SYSTEM SET synchronous_commit = off",
    "ALTER SYSTEM SET full_page_writes = off",
)


def start_logical_primary(pgdata: Path) -> EmbeddedServer:
    """Start (initialising if needed) the embedded server in `pgdata` with `wal_level =
    logical`: settings written with ALTER SYSTEM, then a restart (wal_level needs one)."""
    server = EmbeddedServer.attach(pgdata)
    try:
        with psycopg.connect(server.conninfo, autocommit=True) as conn:
            for statement in PRIMARY_SETTINGS:
                conn.execute(statement)
        server.stop()
        server = EmbeddedServer.attach(pgdata)
        with psycopg.connect(server.conninfo) as conn:
            row = conn.execute("SHOW wal_level").fetchone()
        assert row is not None and row[0] == "logical", f"wal_level is {row}"
    except BaseException:
        server.stop()
        raise
    return server
