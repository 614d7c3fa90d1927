"""Change events as Debezium's PostgreSQL connector writes them, for tests.

`EventWriter` produces the value of each event exactly in the documented shape (Debezium
PostgreSQL connector, "Data change events"): the envelope `before` / `after` / `source` / `op` /
`ts_ms`, the `source` block with `version`, `connector`, `name`, `ts_ms`, `snapshot`, `db`,
`sequence`, `schema`, `table`, `txId`, `lsn`, `xmin`; with the JSON converter's schemas enabled
the whole is wrapped as `{"schema": <Envelope struct>, "payload": <envelope>}`. Column values
use the connector's default encodings (`int32`/`int64` numbers, `string` text, `boolean`,
`io.debezium.time.ZonedTimestamp` for timestamptz). Truncates (`op: t`) carry no row, deletes
are followed by a tombstone (a null value), and transaction metadata events are
`{"status": "BEGIN"|"END", "id": "<txId>:<lsn>", ...}` on `<prefix>.transaction`.

Nothing here is strata's format; the decoder under test must read what Debezium writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

PLACEHOLDER = "__debezium_unavailable_value"
VERSION = "2.7.3.Final"

# (column, Kafka Connect type, semantic name, optional)
TICKETS_COLUMNS: list[tuple[str, str, str | None, bool]] = [
    ("id", "int64", None, False),
    ("org", "string", None, True),
    ("title", "string", None, True),
    ("body", "string", None, True),
    ("status", "string", None, False),
    ("priority", "int32", None, False),
]


@dataclass(frozen=True)
class Tx:
    """The source transaction an event belongs to: its id, LSN and commit time (ms)."""

    tx_id: int
    lsn: int
    ts_ms: int


class EventWriter:
    """Writes one table's change events, with or without the JSON converter's schema."""

    def __init__(
        self,
        *,
        prefix: str = "dbserver1",
        schema: str = "public",
        table: str = "tickets",
        columns: list[tuple[str, str, str | None, bool]] | None = None,
        schemas: bool = True,
    ) -> None:
        self.prefix, self.schema, self.table = prefix, schema, table
        self.columns = columns if columns is not None else TICKETS_COLUMNS
        self.schemas = schemas

    @property
    def subject(self) -> str:
        """Debezium Server's destination for the table: <topic.prefix>.<schema>.<table>."""
        return f"{self.prefix}.{self.schema}.{self.table}"

    # --- the operations ------------------------------------------------------------------------

    def create(self, after: dict[str, Any], tx: Tx) -> bytes:
        return self._event("c", None, after, tx)

    def read(self, after: dict[str, Any], tx: Tx, snapshot: str = "true") -> bytes:
        """A snapshot read; `snapshot` is "first", "true", "last", ... as Debezium marks it."""
        return self._event("r", None, after, tx, snapshot=snapshot)

    def update(self, before: dict[str, Any] | None, after: dict[str, Any], tx: Tx) -> bytes:
        return self._event("u", before, after, tx)

    def delete(self, before: dict[str, Any], tx: Tx) -> bytes:
        return self._event("d", before, None, tx)

    def truncate(self, tx: Tx) -> bytes:
        payload = {"source": self._source(tx, "false"), "op": "t", "ts_ms": tx.ts_ms + 7}
        return self._wrap(payload)

    def tombstone(self) -> bytes:
        """The null value after a delete (as the bytes a broker carries: none)."""
        return b""

    def boundary(self, status: str, tx: Tx, events: int | None = None) -> bytes:
        """A transaction metadata event (<prefix>.transaction), schemaless."""
        collections = (
            [{"data_collection": f"{self.schema}.{self.table}", "event_count": events}]
            if status == "END"
            else None
        )
        return _json(
            {
                "status": status,
                "id": f"{tx.tx_id}:{tx.lsn}",
                "ts_ms": tx.ts_ms,
                "event_count": events if status == "END" else None,
                "data_collections": collections,
            }
        )

    # --- the envelope --------------------------------------------------------------------------

    def _event(
        self,
        op: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        tx: Tx,
        *,
        snapshot: str = "false",
    ) -> bytes:
        payload = {
            "before": before,
            "after": after,
            "source": self._source(tx, snapshot),
            "op": op,
            "ts_ms": tx.ts_ms + 7,  # when the connector processed it
            "transaction": None,
        }
        return self._wrap(payload)

    def _source(self, tx: Tx, snapshot: str) -> dict[str, Any]:
        return {
            "version": VERSION,
            "connector": "postgresql",
            "name": self.prefix,
            "ts_ms": tx.ts_ms,
            "snapshot": snapshot,
            "db": "postgres",
            "sequence": json.dumps([str(tx.lsn - 8), str(tx.lsn)]),
            "schema": self.schema,
            "table": self.table,
            "txId": tx.tx_id,
            "lsn": tx.lsn,
            "xmin": None,
        }

    def _wrap(self, payload: dict[str, Any]) -> bytes:
        if not self.schemas:
            return _json(payload)
        return _json({"schema": self._envelope_schema(), "payload": payload})

    def _envelope_schema(self) -> dict[str, Any]:
        row = f"{self.prefix}.{self.schema}.{self.table}.Value"
        fields = [_field(c, t, n, o) for c, t, n, o in self.columns]
        return {
            "type": "struct",
            "fields": [
                {"type": "struct", "fields": fields, "optional": True, "name": row,
                 "field": "before"},
                {"type": "struct", "fields": fields, "optional": True, "name": row,
                 "field": "after"},
                {"type": "struct", "fields": _SOURCE_FIELDS, "optional": False,
                 "name": "io.debezium.connector.postgresql.Source", "field": "source"},
                {"type": "string", "optional": False, "field": "op"},
                {"type": "int64", "optional": True, "field": "ts_ms"},
            ],
            "optional": False,
            "name": f"{self.prefix}.{self.schema}.{self.table}.Envelope",
            "version": 2,
        }  # fmt: skip


def _field(column: str, kind: str, name: str | None, optional: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": kind, "optional": optional, "field": column}
    if name is not None:
        entry["name"] = name
        entry["version"] = 1
    return entry


_SOURCE_FIELDS = [
    {"type": "string", "optional": False, "field": "version"},
    {"type": "string", "optional": False, "field": "connector"},
    {"type": "string", "optional": False, "field": "name"},
    {"type": "int64", "optional": False, "field": "ts_ms"},
    {"type": "string", "optional": True, "name": "io.debezium.data.Enum", "version": 1,
     "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,"
                    "last,false,incremental"}, "default": "false", "field": "snapshot"},
    {"type": "string", "optional": False, "field": "db"},
    {"type": "string", "optional": True, "field": "sequence"},
    {"type": "string", "optional": False, "field": "schema"},
    {"type": "string", "optional": False, "field": "table"},
    {"type": "int64", "optional": True, "field": "txId"},
    {"type": "int64", "optional": True, "field": "lsn"},
    {"type": "int64", "optional": True, "field": "xmin"},
]  # fmt: skip


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()
