from __future__ import annotations

import threading
from dataclasses import fields

import psycopg

from strata.config import Settings
from strata.gateway.principal import Limits
from strata.store.database import Database
from strata.store.migrations import apply_migrations, current_version, migrations


def _tables(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
    ).fetchall()
    return {row[0] for row in rows}


def _columns(conn: psycopg.Connection, table: str) -> set[str]:
    rows = conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,)
    ).fetchall()
    return {row[0] for row in rows}


def test_migrations_ship_with_the_package_in_version_order() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert found[0].name == "gateway"
    assert "CREATE TABLE api_keys" in found[0].sql


def test_applying_twice_is_idempotent(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        assert current_version(conn) == 0
        assert apply_migrations(conn) == [m.version for m in migrations()]
        assert apply_migrations(conn) == []
        assert current_version(conn) == migrations()[-1].version
        rows = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
    assert rows == [(m.version, m.name) for m in migrations()]


def test_schema_has_the_gateway_tables_and_limit_columns(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        apply_migrations(conn)
        assert {"tenants", "users", "api_keys", "audit_log", "usage_ledger"} <= _tables(conn)
        limit_columns = {f.name for f in fields(Limits)}
        for table in ("tenants", "users", "api_keys"):
            assert limit_columns <= _columns(conn, table), table


def test_concurrent_appliers_apply_each_migration_once(pg_dsn: str) -> None:
    barrier = threading.Barrier(4)
    applied: list[list[int]] = []

    def apply() -> None:
        with psycopg.connect(pg_dsn) as conn:
            barrier.wait()
            applied.append(apply_migrations(conn))

    threads = [threading.Thread(target=apply) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # Each migration is applied exactly once, by whichever applier got there first.
    assert sorted(v for versions in applied for v in versions) == [m.version for m in migrations()]


def test_concurrent_database_starts_do_not_race(pg_settings: Settings) -> None:
    barrier = threading.Barrier(3)
    errors: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            Database(pg_settings).start()  # pgvector + migrations, under the advisory lock
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    with Database(pg_settings) as database, database.connect() as conn:
        assert current_version(conn) == migrations()[-1].version
