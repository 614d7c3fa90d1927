"""One Debezium change event (the JSON of one broker message) → a typed event.

Debezium's PostgreSQL connector writes, per row change, an envelope
`{"before", "after", "source", "op", "ts_ms", ["transaction"]}` — wrapped as
`{"schema": ..., "payload": envelope}` when the JSON converter's schemas are enabled:

- `op`: `c` insert, `u` update, `d` delete, `r` a snapshot read, `t` truncate, `m` a logical
  decoding message (ignored);
- `source`: `schema`, `table`, `txId`, `lsn`, `ts_ms` (the commit time), `snapshot`;
- `before`: the key columns (REPLICA IDENTITY DEFAULT) or the whole old row (FULL);
- a column Debezium could not read (an unchanged TOASTed value) holds the unavailable-value
  placeholder.

A tombstone (the null value Debezium sends after a delete, for Kafka log compaction) and
transaction metadata events (`{"status": "BEGIN"|"END", "id": "<txId>:<lsn>", ...}`) are
recognised too. `decode` returns the same `RowChange` / `TruncateChange` the direct source
builds from pgoutput, with values in PostgreSQL's text form (`values.text_value`), plus what
the pipeline needs to group and time them. Anything else raises `MalformedEvent`.

This module knows nothing of brokers, sources or the index.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

from strata.pipeline.changes import Row, RowChange, TruncateChange
from strata.pipeline.debezium.values import BadValue, FieldType, text_value
from strata.pipeline.pgoutput import UNCHANGED, Relation

_ROW_KINDS: dict[str, Literal["insert", "update", "delete"]] = {
    "c": "insert",
    "r": "insert",
    "u": "update",
    "d": "delete",
}
_SNAPSHOT_LAST = frozenset({"last", "last_in_data_collection"})  # of all, of this table
_SNAPSHOT_NOT = frozenset({"false", "incremental"})  # incremental: interleaved with the stream


class MalformedEvent(ValueError):
    """The message is not a Debezium change event strata can apply; the reason says why and,
    where the event named a row, `row` holds its values."""

    def __init__(self, reason: str, row: Row | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.row = row


@dataclass(frozen=True)
class Origin:
    """Where and when the change happened, from the event's `source` block."""

    schema: str
    table: str
    tx_id: int | None
    lsn: int | None
    commit_time: datetime  # source.ts_ms: the commit time on the primary
    snapshot: Literal["no", "yes", "last"]  # part of a snapshot; "last": the table's final row


@dataclass(frozen=True)
class ChangeEvent:
    """A row change or truncate, and the PostgreSQL type OIDs of the columns it showed."""

    origin: Origin
    change: RowChange | TruncateChange
    types: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Boundary:
    """A transaction metadata event: `status` BEGIN or END of transaction `tx_id`."""

    status: Literal["BEGIN", "END"]
    tx_id: int


@dataclass(frozen=True)
class Ignored:
    """A message with nothing to apply: a tombstone, a logical decoding message, ..."""

    why: str


Event: TypeAlias = ChangeEvent | Boundary | Ignored


def decode(data: bytes | None, placeholder: str) -> Event:
    """Decode one message body; raise `MalformedEvent` for anything not Debezium's format."""
    if not data or data.strip() == b"null":
        return Ignored("tombstone")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedEvent(f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise MalformedEvent(f"not a JSON object but {type(document).__name__}")
    payload, types = _unwrap(document)
    if payload is None:
        return Ignored("tombstone")
    if payload.get("status") in ("BEGIN", "END"):
        return Boundary(payload["status"], _tx_number(payload.get("id")))
    return _change(payload, types, placeholder)


def _unwrap(document: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, FieldType]]:
    """The envelope and the row's column schemas, with or without the converter's schema."""
    if set(document) != {"schema", "payload"}:
        return document, {}
    payload = document["payload"]
    if payload is not None and not isinstance(payload, dict):
        raise MalformedEvent("payload is not a JSON object")
    return payload, _row_schema(document["schema"])


def _row_schema(schema: Any) -> dict[str, FieldType]:
    """Column name → schema, from the envelope's `after` (or `before`) struct."""
    if not isinstance(schema, dict):
        return {}
    for part in ("after", "before"):
        for entry in schema.get("fields") or []:
            if isinstance(entry, dict) and entry.get("field") == part:
                return {
                    str(column["field"]): FieldType.of(column)
                    for column in entry.get("fields") or []
                    if isinstance(column, dict) and "field" in column
                }
    return {}


def _change(payload: dict[str, Any], types: dict[str, FieldType], placeholder: str) -> Event:
    op = payload.get("op")
    if op == "m":
        return Ignored("logical decoding message")
    if op not in (*_ROW_KINDS, "t"):
        raise MalformedEvent(
            f"op is {op!r}, not one of c, u, d, r, t: the messages must be Debezium's change "
            "event envelope (remove an unwrapping transform such as ExtractNewRecordState)"
        )
    origin = _origin(payload.get("source"))
    relation = Relation(0, origin.schema, origin.table, "d", ())
    if op == "t":
        return ChangeEvent(origin, TruncateChange(relation))
    row_types: dict[str, int] = {}
    before = _row(payload.get("before"), "before", types, placeholder, row_types)
    after = _row(payload.get("after"), "after", types, placeholder, row_types)
    kind = _ROW_KINDS[op]
    if kind == "delete":
        if before is None:
            raise MalformedEvent(
                f"delete on {origin.schema}.{origin.table} without `before`: the table needs "
                "REPLICA IDENTITY DEFAULT (a primary key) or FULL so the deleted key is sent"
            )
        return ChangeEvent(origin, RowChange("delete", relation, None, before), row_types)
    if after is None:
        raise MalformedEvent(f"op {op} without `after`", before)
    return ChangeEvent(origin, RowChange(kind, relation, _filled(after, before), before), row_types)


def _origin(source: Any) -> Origin:
    if not isinstance(source, dict):
        raise MalformedEvent("no `source` block")
    schema, table, ts_ms = source.get("schema"), source.get("table"), source.get("ts_ms")
    if not isinstance(schema, str) or not isinstance(table, str) or not schema or not table:
        raise MalformedEvent("source.schema and source.table must name the table")
    if not isinstance(ts_ms, int) or isinstance(ts_ms, bool):
        raise MalformedEvent(f"source.ts_ms is {ts_ms!r}, not milliseconds since the epoch")
    return Origin(
        schema,
        table,
        _optional_int(source.get("txId"), "source.txId"),
        _optional_int(source.get("lsn"), "source.lsn"),
        datetime.fromtimestamp(ts_ms / 1000, UTC),
        _snapshot(source.get("snapshot")),
    )


def _snapshot(value: Any) -> Literal["no", "yes", "last"]:
    """Debezium 1.x writes a boolean (or "last"); 2.x "true", "first", "last", "false", ..."""
    text = str(value).lower() if value is not None else "false"
    if text in _SNAPSHOT_NOT:
        return "no"
    return "last" if text in _SNAPSHOT_LAST else "yes"


def _row(
    values: Any,
    part: str,
    types: Mapping[str, FieldType],
    placeholder: str,
    oids: dict[str, int],
) -> Row | None:
    if values is None:
        return None
    if not isinstance(values, dict):
        raise MalformedEvent(f"`{part}` is not a JSON object")
    row: Row = {}
    for column, value in values.items():
        try:
            row[column], oid = text_value(value, types.get(column), placeholder)
        except BadValue as exc:
            raise MalformedEvent(f"{part}.{column}: {exc}") from exc
        if oid is not None:
            oids[column] = oid
    return row


def _filled(after: Row, before: Row | None) -> Row:
    """`after` with placeholders taken from `before` where it has the value (REPLICA IDENTITY
    FULL sends the old row whole, unchanged TOASTed values included)."""
    if before is None:
        return after
    return {
        column: before.get(column, UNCHANGED) if value is UNCHANGED else value
        for column, value in after.items()
    }


def _optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MalformedEvent(f"{name} is {value!r}, not a number")
    try:
        return int(value)
    except ValueError as exc:
        raise MalformedEvent(f"{name} is {value!r}, not a number") from exc


def _tx_number(value: Any) -> int:
    """A transaction metadata id: `<txId>:<lsn>` (Debezium 2.x) or `<txId>`."""
    number = _optional_int(str(value).split(":", 1)[0] if value is not None else None, "id")
    if number is None:
        raise MalformedEvent("transaction metadata event without an id")
    return number
