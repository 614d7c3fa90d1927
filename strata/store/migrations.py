"""Versioned schema migrations, applied at start-up.

Migrations are the files `strata/store/migrations/NNNN_<name>.sql`, applied in version order,
each in its own transaction together with its `schema_migrations` row. Every transaction first
takes one transaction-scoped advisory lock, so processes starting at once (two gateway
replicas, `strata serve` and a `strata keys` command) apply each migration exactly once: the
loser waits, then sees the version recorded and skips it. A migration is never edited once
released; a change is a new file.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import psycopg

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock key shared by everything that changes strata's schema
# (the ASCII of "strata" as a bigint; any constant unique to strata works).
SCHEMA_LOCK_KEY = 0x737472617461
_FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def migrations() -> tuple[Migration, ...]:
    """Every migration shipped with strata, oldest first."""
    folder = resources.files("strata.store") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match is not None:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    assert found, f"no migrations in {folder}: the package was built without its .sql files"
    assert len({m.version for m in found}) == len(found), "two migrations share a version"
    return tuple(found)


def apply_migrations(conn: psycopg.Connection) -> list[int]:
    """Apply every pending migration on `conn` (not in autocommit mode, no open transaction);
    return the versions this call applied (empty when the schema was already current)."""
    applied = []
    for migration in migrations():
        if _apply_one(conn, migration):
            applied.append(migration.version)
    return applied


def lock_schema(conn: psycopg.Connection) -> None:
    """Serialize schema changes among processes until the current transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))


def current_version(conn: psycopg.Connection) -> int:
    """The newest applied version; 0 for an empty database."""
    with conn.transaction():
        lock_schema(conn)
        conn.execute(_CREATE_TABLE)
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    assert row is not None
    return int(row[0])


def _apply_one(conn: psycopg.Connection, migration: Migration) -> bool:
    with conn.transaction():
        lock_schema(conn)
        conn.execute(_CREATE_TABLE)
        if _is_applied(conn, migration.version):
            return False
        conn.execute(migration.sql)  # no parameters, so it may hold many statements
        conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
            (migration.version, migration.name),
        )
    logger.info("applied schema migration %04d_%s", migration.version, migration.name)
    return True


def _is_applied(conn: psycopg.Connection, version: int) -> bool:
    row = conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,)).fetchone()
    return row is not None
