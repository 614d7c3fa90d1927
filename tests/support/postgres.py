"""Real PostgreSQL for tests: one embedded server per test session, one fresh database per test.

Fixtures (registered for every test through `pytest_plugins` in tests/conftest.py):

- `pg_server` (session): the embedded PostgreSQL 18 + pgvector, started once in a temp dir
  (`pg_server.pgdata.parent` works as a `data_dir`), tuned for speed (fsync off) and stopped
  when the session ends. Most tests want `pg_dsn` instead.
- `pg_data_dir` (function): an empty data dir for a test that starts its own embedded server.
- `pg_dsn` (function): a DSN (libpq key=value string) for a new, empty database created for
  this test alone and dropped after it (open connections are cut). Nothing is migrated:
  call `Database` / `apply_migrations` yourself, or use `pg_database`.
- `pg_settings` (function): `Settings` whose `store.dsn` is `pg_dsn` and whose `data_dir` is
  the test's tmp_path.
- `pg_database` (async, function): a started `strata.store.database.Database` on `pg_dsn`
  (schema applied, pool of 2 open), closed after the test.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pydantic import SecretStr

from strata.config import Settings, StoreSettings
from strata.store.database import Database, EmbeddedServer

# Durability buys nothing in a throw-away test server; these make CREATE DATABASE and commits
# several times faster. All three take effect on reload.
_FAST_SETTINGS = (
    "ALTER SYSTEM SET fsync = off",
    "ALTER SYSTEM SET synchronous_commit = off",
    "ALTER SYSTEM SET full_page_writes = off",
)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedServer]:
    """The session's embedded PostgreSQL (data dir `<pg_server.pgdata.parent>/postgres`)."""
    with _data_dir() as data_dir:
        server = EmbeddedServer.attach(data_dir / "postgres")
        try:
            with psycopg.connect(server.conninfo, autocommit=True) as conn:
                for statement in _FAST_SETTINGS:
                    conn.execute(statement)
                conn.execute("SELECT pg_reload_conf()")
            yield server
        finally:
            server.stop()


@pytest.fixture
def pg_data_dir() -> Iterator[Path]:
    """An empty `data_dir` for a test that starts its own embedded server (about a second);
    a server still running in `<data_dir>/postgres` afterwards is stopped."""
    with _data_dir() as data_dir:
        yield data_dir


@contextmanager
def _data_dir() -> Iterator[Path]:
    # Not under pytest's tmp_path: pytest resets its temp root to 0700 whenever any session
    # starts, and the server's system user must be able to traverse to its data dir.
    data_dir = Path(tempfile.mkdtemp(prefix="strata-test-pg-"))
    try:
        yield data_dir
    finally:
        EmbeddedServer(data_dir / "postgres", "", started_here=True).stop()  # if still up
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def fresh_database(server: EmbeddedServer, prefix: str = "test") -> Iterator[str]:
    """The DSN of a new, empty database of `server`, dropped (connections and all) on exit."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.conninfo, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(server.conninfo, dbname=name)
    finally:
        with psycopg.connect(server.conninfo, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def pg_dsn(pg_server: EmbeddedServer) -> Iterator[str]:
    """A DSN for a fresh, empty database of the session server, dropped after the test."""
    with fresh_database(pg_server) as dsn:
        yield dsn


@pytest.fixture
def pg_settings(pg_dsn: str, tmp_path: Path) -> Settings:
    """Settings pointed at this test's database."""
    return Settings(data_dir=tmp_path, store=StoreSettings(dsn=SecretStr(pg_dsn)))


@pytest.fixture
async def pg_database(pg_settings: Settings) -> AsyncIterator[Database]:
    """A started `Database` (migrated, pool open) on this test's database."""
    async with Database(pg_settings, pool_size=2) as database:
        yield database
