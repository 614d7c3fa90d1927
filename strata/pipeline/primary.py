"""The user's primary database over an ordinary connection (psycopg 3): what the table looks like,
whether it can be streamed, its publication, its slot's lag, and reading rows — all of them
inside the exported snapshot (backfill), or a few by key now (refetch, row filter).

Values are read as text (`column::text`), the same form pgoutput streams, so one mapping path
serves backfill and stream alike. Replication itself lives in `strata.pipeline.replication`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from strata.config import PipelineSourceSettings
from strata.pipeline.changes import Row
from strata.pipeline.errors import SourceError
from strata.pipeline.pgoutput import parse_lsn

Key = tuple[str, ...]  # primary key values, text form, in key column order
BACKFILL_BATCH = 256


@dataclass(frozen=True)
class TableInfo:
    """A table of the primary as the catalogs describe it."""

    schema: str
    name: str
    column_types: dict[str, str]  # name -> format_type(), in column order
    column_oids: dict[str, int]  # name -> type oid
    primary_key: tuple[str, ...]
    replica_identity: str  # 'd' default (primary key), 'n' nothing, 'f' full, 'i' index
    identity_columns: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


@dataclass(frozen=True)
class SlotStatus:
    """A replication slot on the primary and how far behind its consumer is."""

    active: bool
    confirmed_lsn: int | None
    lag_bytes: int | None  # WAL the primary keeps for this slot beyond what was confirmed
    wal_status: str | None


def describe_table(conn: psycopg.Connection, table: str) -> TableInfo:
    """Catalog facts about `table`; `SourceError` when it does not exist."""
    row = conn.execute(
        "SELECT c.oid, n.nspname, c.relname, c.relreplident FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
        (table,),
    ).fetchone()
    if row is None:
        raise SourceError(f"table {table} does not exist on the primary database")
    oid, schema, name, identity = row
    columns = conn.execute(
        "SELECT attname, atttypid, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (oid,),
    ).fetchall()
    return TableInfo(
        schema,
        name,
        {c[0]: c[2] for c in columns},
        {c[0]: int(c[1]) for c in columns},
        _index_columns(conn, oid, "indisprimary"),
        identity,
        _index_columns(conn, oid, "indisreplident"),
    )


def _index_columns(conn: psycopg.Connection, table_oid: int, flag: str) -> tuple[str, ...]:
    rows = conn.execute(
        sql.SQL(
            "SELECT a.attname FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
            "JOIN pg_attribute a ON a.attnum = k.attnum "
            "WHERE i.indrelid = %s AND i.{} AND a.attrelid = i.indrelid ORDER BY k.n"
        ).format(sql.Identifier(flag)),
        (table_oid,),
    ).fetchall()
    return tuple(r[0] for r in rows)


def key_columns(info: TableInfo, source: PipelineSourceSettings) -> tuple[str, ...]:
    """The columns that identify a row, checked against what replication will send.

    Raises `SourceError` with the fix when columns are missing or when deletes and key changes
    could not be attributed to a row (no usable replica identity)."""
    needed = [*source.primary_key, *source.template_columns, *source.metadata_columns]
    needed += [source.tenant_column] if source.tenant_column else []
    missing = sorted({c for c in needed if c not in info.column_types})
    if missing:
        raise SourceError(f"pipeline source '{source.name}': {info.qualified} has no {missing}")
    key = tuple(source.primary_key) or info.primary_key
    if not key:
        raise SourceError(
            f"pipeline source '{source.name}': {info.qualified} has no primary key. Add one, "
            f"or set pipeline.sources[].primary_key to columns that identify a row and run "
            f"ALTER TABLE {info.qualified} REPLICA IDENTITY FULL on the primary"
        )
    if info.replica_identity != "f" and not set(key) <= set(_identity(info)):
        raise SourceError(
            f"pipeline source '{source.name}': deletes and updates on {info.qualified} would not "
            f"say which row they touched (replica identity {_IDENTITY_NAMES[info.replica_identity]}"
            f", key {list(key)}). Fix it on the primary with: ALTER TABLE {info.qualified} "
            f"REPLICA IDENTITY FULL; or add a primary key on {list(key)}"
        )
    return key


_IDENTITY_NAMES = {"d": "DEFAULT", "n": "NOTHING", "f": "FULL", "i": "USING INDEX"}


def _identity(info: TableInfo) -> tuple[str, ...]:
    if info.replica_identity == "d":
        return info.primary_key
    if info.replica_identity == "i":
        return info.identity_columns
    return ()


def check_wal_level(conn: psycopg.Connection) -> None:
    """`SourceError` unless the primary runs with `wal_level = logical`."""
    row = conn.execute("SHOW wal_level").fetchone()
    if row is None or row[0] != "logical":
        level = row[0] if row else "unknown"
        raise SourceError(
            f"the primary runs with wal_level = {level}; logical replication needs "
            "ALTER SYSTEM SET wal_level = logical and a restart of the primary"
        )


def ensure_publication(conn: psycopg.Connection, publication: str, info: TableInfo) -> None:
    """Create `publication` for exactly this table (inserts, updates, deletes, truncates)."""
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,))
    verb = (
        "ALTER PUBLICATION {} SET TABLE {}"
        if exists.fetchone()
        else "CREATE PUBLICATION {} FOR TABLE {}"
    )
    conn.execute(sql.SQL(verb).format(sql.Identifier(publication), info.ident))


def slot_status(conn: psycopg.Connection, slot: str) -> SlotStatus | None:
    """The slot's state, or None when it does not exist."""
    row = conn.execute(
        "SELECT active, confirmed_flush_lsn::text, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint, wal_status "
        "FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    if row is None:
        return None
    active, confirmed, lag, wal_status = row
    return SlotStatus(bool(active), parse_lsn(confirmed) if confirmed else None, lag, wal_status)


def evict_slot_reader(conn: psycopg.Connection, slot: str) -> int | None:
    """Terminate the walsender streaming `slot`, if one does; its pid. For a new owner of the
    source only: the reader is a former owner's, cut off from the store but not yet from the
    primary. Without the right to signal it (another role), None: the new owner waits for it."""
    try:
        row = conn.execute(
            "SELECT active_pid, pg_terminate_backend(active_pid) FROM pg_replication_slots "
            "WHERE slot_name = %s AND active_pid IS NOT NULL",
            (slot,),
        ).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return None if row is None else int(row[0])


def drop_slot(conn: psycopg.Connection, slot: str, *, wait_s: float = 10.0) -> None:
    """Drop the slot if it exists. The walsender of a stream closed a moment ago still holds
    it while it exits: wait up to `wait_s` for that (longer means another process streams)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (slot,),
            )
            return
        except psycopg.errors.ObjectInUse:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class RowReader:
    """Reads the source's columns as text: all rows inside an exported snapshot (backfill) or
    the current version of a few rows by key. Rows failing the row filter are not returned."""

    def __init__(
        self,
        conn: psycopg.Connection,
        info: TableInfo,
        columns: Sequence[str],
        key: Sequence[str],
        row_filter: str | None,
    ) -> None:
        self.conn = conn
        self.info = info
        self.columns = list(dict.fromkeys([*key, *columns]))
        self.key = tuple(key)
        self._filter = sql.SQL(row_filter) if row_filter else sql.SQL("true")

    def _select(self) -> sql.Composed:
        fields = sql.SQL(", ").join(
            sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in self.columns
        )
        return sql.SQL("SELECT {} FROM {} AS t").format(fields, self.info.ident)

    def _rows(self, cursor: psycopg.Cursor) -> list[Row]:
        return [dict(zip(self.columns, values, strict=True)) for values in cursor.fetchall()]

    def fetch(self, keys: Sequence[Key]) -> list[Row]:
        """The current rows with these keys that pass the row filter."""
        if not keys:
            return []
        types = [sql.SQL(self.info.column_types[c]) for c in self.key]
        row = sql.SQL("({})").format(sql.SQL(", ").join(sql.SQL("%s::{}").format(t) for t in types))
        matches = sql.SQL(" AND ").join(
            sql.SQL("t.{0} = k.{0}").format(sql.Identifier(c)) for c in self.key
        )
        query = sql.SQL("{} JOIN (VALUES {}) AS k({}) ON {} WHERE ({})").format(
            self._select(),
            sql.SQL(", ").join([row] * len(keys)),
            sql.SQL(", ").join(map(sql.Identifier, self.key)),
            matches,
            self._filter,
        )
        params = [value for key in keys for value in key]
        with self.conn.cursor() as cursor:
            cursor.execute(query, params)
            return self._rows(cursor)

    def snapshot(self, snapshot: str) -> tuple[int, Iterator[list[Row]]]:
        """(row count, batches of rows) as of the exported `snapshot`. Opens a REPEATABLE READ
        transaction on the (autocommit) connection; it ends when the batches are exhausted."""
        conn = self.conn
        assert conn.autocommit, "snapshot import needs an autocommit connection"
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        where = sql.SQL(" WHERE ({})").format(self._filter)
        count_query = sql.SQL("SELECT count(*) FROM {} AS t").format(self.info.ident) + where
        row = conn.execute(count_query).fetchone()
        assert row is not None
        conn.execute(
            sql.SQL("DECLARE strata_backfill NO SCROLL CURSOR FOR ") + self._select() + where
        )
        return int(row[0]), self._batches()

    def _batches(self) -> Iterator[list[Row]]:
        try:
            while True:
                with self.conn.cursor() as cursor:
                    cursor.execute(f"FETCH {BACKFILL_BATCH} FROM strata_backfill")
                    rows = self._rows(cursor)
                if not rows:
                    return
                yield rows
        finally:
            self.conn.execute("ROLLBACK")  # read only: nothing to keep
