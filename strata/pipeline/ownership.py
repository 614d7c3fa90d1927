"""Which worker streams which source: one owner per source among all the processes that run the
pipeline (`strata pipeline run`, `strata serve`) against the same store.

Ownership of a source is a session-level advisory lock in strata's store,
`pg_try_advisory_lock(LOCK_CLASS, lock_id)`, taken on the very connection that then writes the
source's index (`Ownership.conn`). Hence:

- one live session holds it; a worker that does not get it stands by and tries again every
  `pipeline.worker.poll_interval_s`, and the one that gets it reads where to resume from the
  slot (or broker) and the store, never from what another process had in memory;
- PostgreSQL drops the lock the moment the owner's session ends (process killed, connection
  lost, server restarted): hand-over needs no lease timeout. Over TCP, the session of an owner
  whose host vanished ends after about `pipeline.worker.dead_peer_s` (keepalives and a user
  timeout are set on it, both ends);
- fencing: every index write commits on the lock's own session, so an owner that lost the lock
  lost with it the connection its writes commit on. It cannot commit once another worker can
  own the source: no check-then-commit window, and no generation number to carry.

The table `pipeline_owners` (migration 0008) gives each source its lock number and records who
took the lock last and when; `owner()` asks pg_locks whether that session still holds it.

The store must be reached directly or through a session-mode pooler: a transaction-mode pooler
(PgBouncer's default) hands a session, and the locks it holds, to other clients.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import psycopg

from strata.config import PipelineWorkerSettings
from strata.pipeline.errors import PipelineError
from strata.pipeline.metrics import METRICS, PipelineMetrics

# First key of the pipeline's two-key advisory locks ('strp'). strata's schema lock uses the
# one-bigint form, which PostgreSQL keeps in a separate key space.
LOCK_CLASS = 0x73747270


@dataclass(frozen=True)
class Ownership:
    """A source this worker owns: the connection that holds its lock (autocommit; every index
    write of the source runs on it) and when the lock was taken (the store's clock)."""

    source: str
    worker: str
    conn: psycopg.Connection
    since: datetime


@dataclass(frozen=True)
class Owner:
    """Who took a source last, as the store records it."""

    worker: str
    since: datetime
    live: bool  # its session holds the lock now; False: gone, and no one has taken over yet
    acquisitions: int  # times any worker took the source (1: never handed over)


def worker_id(settings: PipelineWorkerSettings) -> str:
    """`pipeline.worker.id`, else <hostname>-<pid>."""
    return settings.id or f"{socket.gethostname()}-{os.getpid()}"


class SourceLock:
    """One worker's claim on one source. Not thread-safe: one thread tries, owns, releases.

    `try_acquire()` keeps its connection between tries (a standby costs one idle session per
    source, one cheap query per poll); `release()` closes it, which ends the session and so
    drops the lock whatever state a failed run left the session in."""

    def __init__(
        self,
        conninfo: str,
        source: str,
        worker: str,
        *,
        dead_peer_s: int = 15,
        metrics: PipelineMetrics = METRICS,
    ) -> None:
        self.source = source
        self.worker = worker
        self._conninfo = conninfo
        self._dead_peer_s = dead_peer_s
        self._metrics = metrics
        self._conn: psycopg.Connection | None = None
        self._lock_id: int | None = None
        self.ownership: Ownership | None = None

    def try_acquire(self) -> Ownership | None:
        """Own the source unless a live session of another worker does (then None)."""
        if self.ownership is not None:
            return self.ownership
        conn = self._connection()
        lock_id = self._source_lock_id(conn)
        row = conn.execute(
            "SELECT pg_try_advisory_lock(%s::integer, %s::integer)", (LOCK_CLASS, lock_id)
        ).fetchone()
        if not (row and row[0]):
            self._metrics.owned.labels(self.source).set(0)
            return None
        self.ownership = Ownership(self.source, self.worker, conn, self._record(conn))
        self._metrics.ownership_changes.labels(self.source, "acquired").inc()
        self._metrics.owned.labels(self.source).set(1)
        return self.ownership

    def holder(self) -> Owner | None:
        """Who owns (or last owned) the source, read on this lock's connection."""
        return owner(self._connection(), self.source)

    def release(self) -> None:
        """Give the source up (if owned) and close the connection."""
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            conn.close()
        if self.ownership is not None:
            self.ownership = None
            self._metrics.ownership_changes.labels(self.source, "released").inc()
            self._metrics.owned.labels(self.source).set(0)

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect_owner(self._conninfo, self.worker, self._dead_peer_s)
        return self._conn

    def _source_lock_id(self, conn: psycopg.Connection) -> int:
        """The source's lock number (registered on first use; it never changes)."""
        if self._lock_id is None:
            conn.execute(
                "INSERT INTO pipeline_owners (source) VALUES (%s) ON CONFLICT (source) DO NOTHING",
                (self.source,),
            )
            row = conn.execute(
                "SELECT lock_id FROM pipeline_owners WHERE source = %s", (self.source,)
            ).fetchone()
            assert row is not None
            self._lock_id = int(row[0])
        return self._lock_id

    def _record(self, conn: psycopg.Connection) -> datetime:
        row = conn.execute(
            "UPDATE pipeline_owners SET worker = %s, owned_since = now(), "
            "acquisitions = acquisitions + 1 WHERE source = %s RETURNING owned_since",
            (self.worker, self.source),
        ).fetchone()
        assert row is not None
        return row[0]


@contextmanager
def owning(conninfo: str, source: str, settings: PipelineWorkerSettings) -> Iterator[Ownership]:
    """Own `source` for the block (one-off jobs such as a backfill); `PipelineError` naming
    the worker that owns it instead."""
    lock = SourceLock(conninfo, source, worker_id(settings), dead_peer_s=settings.dead_peer_s)
    try:
        ownership = lock.try_acquire()
        if ownership is None:
            holder = lock.holder()
            who = f"worker {holder.worker} (since {holder.since})" if holder else "another worker"
            raise PipelineError(
                f"pipeline source '{source}' is streamed by {who}: stop that `strata pipeline "
                "run` / `strata serve` first (a worker backfills on its own when a source needs it)"
            )
        yield ownership
    finally:
        lock.release()


def connect_owner(conninfo: str, worker: str, dead_peer_s: int) -> psycopg.Connection:
    """An autocommit connection to the store named after `worker`, on which a host that stops
    answering is given up after about `dead_peer_s` by both ends (TCP only; a Unix socket
    needs none of it: a dead process closes it at once)."""
    idle = max(1, dead_peer_s // 3)
    interval = max(1, dead_peer_s // 6)
    count = max(1, (dead_peer_s - idle) // interval)
    conn = psycopg.connect(
        conninfo,
        autocommit=True,
        application_name=f"strata-pipeline {worker}"[:63],
        keepalives=1,
        keepalives_idle=idle,
        keepalives_interval=interval,
        keepalives_count=count,
        tcp_user_timeout=dead_peer_s * 1000,
    )
    conn.execute(
        "SELECT set_config('tcp_keepalives_idle', %s, false), "
        "set_config('tcp_keepalives_interval', %s, false), "
        "set_config('tcp_keepalives_count', %s, false), "
        "set_config('tcp_user_timeout', %s, false)",
        (str(idle), str(interval), str(count), str(dead_peer_s * 1000)),
    )
    return conn


def owner(conn: psycopg.Connection, source: str) -> Owner | None:
    """Who took `source` last and whether its session still holds the lock (None: no worker
    has owned it yet)."""
    row = conn.execute(
        "SELECT o.worker, o.owned_since, EXISTS (SELECT 1 FROM pg_locks l "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND l.classid = %s::bigint::oid AND l.objid = o.lock_id::bigint::oid), o.acquisitions "
        "FROM pipeline_owners o WHERE o.source = %s AND o.worker IS NOT NULL",
        (LOCK_CLASS, source),
    ).fetchone()
    return None if row is None else Owner(row[0], row[1], bool(row[2]), int(row[3]))
