"""Decoding Debezium's change events: fixture files in the documented format (PostgreSQL
connector: create/update/delete/read/truncate/message, tombstones, transaction metadata, the
unavailable-value placeholder, with and without the JSON converter's schema)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from strata.pipeline.changes import RowChange, TruncateChange
from strata.pipeline.debezium.events import (
    Boundary,
    ChangeEvent,
    Ignored,
    MalformedEvent,
    decode,
)
from strata.pipeline.debezium.values import BOOL, INT4, INT8, TEXT
from strata.pipeline.pgoutput import UNCHANGED
from tests.pipeline.debezium.debezium_format import PLACEHOLDER, EventWriter, Tx

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def change_of(data: bytes, placeholder: str = PLACEHOLDER) -> ChangeEvent:
    event = decode(data, placeholder)
    assert isinstance(event, ChangeEvent), event
    return event


def row_change(data: bytes) -> RowChange:
    change = change_of(data).change
    assert isinstance(change, RowChange)
    return change


def test_create_with_schema_gives_an_insert_with_text_values_and_types() -> None:
    event = change_of(fixture("create_with_schema.json"))
    assert isinstance(event.change, RowChange)
    assert event.change.kind == "insert"
    assert event.change.new == {
        "id": "1004",
        "first_name": "Anne",
        "last_name": "Kretchmar",
        "notes": "prefers email",
    }
    assert event.change.old is None
    assert (event.change.relation.namespace, event.change.relation.name) == ("public", "customers")
    assert event.types == {"id": INT4, "first_name": TEXT, "last_name": TEXT, "notes": TEXT}
    origin = event.origin
    assert (origin.tx_id, origin.lsn, origin.snapshot) == (771, 24023128, "no")
    assert origin.commit_time == datetime(2024, 5, 24, 9, 33, 30, 123000, tzinfo=UTC)


def test_update_without_schema_keeps_the_old_key() -> None:
    change = row_change(fixture("update_schemaless.json"))
    assert change.kind == "update"
    assert change.old == {"id": "1004"}
    assert change.new is not None and change.new["first_name"] == "Anne Marie"


def test_the_placeholder_of_an_unchanged_toasted_column_is_unchanged() -> None:
    change = row_change(fixture("update_unchanged_toast.json"))
    assert change.new is not None
    assert change.new["notes"] is UNCHANGED
    assert change.new["last_name"] == "Kretschmar"


def test_replica_identity_full_fills_the_placeholder_from_before() -> None:
    change = row_change(fixture("update_full_identity_toast.json"))
    assert change.new is not None and change.new["notes"] == "a very long note"


def test_a_configured_placeholder_replaces_the_default() -> None:
    data = fixture("update_unchanged_toast.json").replace(PLACEHOLDER.encode(), b"<toasted>")
    new = change_of(data, "<toasted>").change
    assert isinstance(new, RowChange) and new.new is not None and new.new["notes"] is UNCHANGED
    default = change_of(data).change
    assert isinstance(default, RowChange) and default.new is not None
    assert default.new["notes"] == "<toasted>"


def test_delete_carries_the_key_in_old() -> None:
    change = row_change(fixture("delete_schemaless.json"))
    assert change.kind == "delete"
    assert change.new is None
    assert change.old == {"id": "1004", "first_name": None, "last_name": None, "notes": None}


def test_truncate_names_the_table() -> None:
    event = change_of(fixture("truncate_with_schema.json"))
    assert isinstance(event.change, TruncateChange)
    assert event.change.relation.qualified_name == "public.customers"
    assert event.origin.tx_id == 776


@pytest.mark.parametrize(
    ("name", "mark"), [("snapshot_read_last.json", "last"), ("snapshot_read_v1.json", "yes")]
)
def test_snapshot_reads_are_inserts_marked_as_snapshot(name: str, mark: str) -> None:
    event = change_of(fixture(name))
    assert isinstance(event.change, RowChange) and event.change.kind == "insert"
    assert event.origin.snapshot == mark


@pytest.mark.parametrize(
    ("snapshot", "mark"),
    [("first", "yes"), ("true", "yes"), ("last_in_data_collection", "last"),
     ("incremental", "no"), ("false", "no"), (False, "no"), (None, "no")],
)  # fmt: skip
def test_every_snapshot_marking(snapshot: Any, mark: str) -> None:
    payload = json.loads(fixture("snapshot_read_last.json"))
    payload["source"]["snapshot"] = snapshot
    assert change_of(json.dumps(payload).encode()).origin.snapshot == mark


@pytest.mark.parametrize("body", [b"", None, b"null", fixture("tombstone_with_schema.json")])
def test_tombstones_are_ignored(body: bytes | None) -> None:
    assert decode(body, PLACEHOLDER) == Ignored("tombstone")


def test_logical_decoding_messages_are_ignored() -> None:
    assert isinstance(decode(fixture("message.json"), PLACEHOLDER), Ignored)


def test_transaction_metadata_gives_boundaries() -> None:
    assert decode(fixture("transaction_begin.json"), PLACEHOLDER) == Boundary("BEGIN", 571)
    assert decode(fixture("transaction_end.json"), PLACEHOLDER) == Boundary("END", 571)
    older = json.dumps({"status": "END", "id": "571", "event_count": 1}).encode()
    assert decode(older, PLACEHOLDER) == Boundary("END", 571)


@pytest.mark.parametrize("schemas", [True, False])
def test_with_and_without_schemas_the_rows_are_the_same(schemas: bool) -> None:
    writer = EventWriter(schemas=schemas)
    tx = Tx(901, 5000, 1716543210123)
    row = {"id": 7, "org": "acme", "title": "Hi", "body": "x", "status": "open", "priority": 2}
    change = row_change(writer.update({"id": 7}, row, tx))
    assert change.new == {
        "id": "7", "org": "acme", "title": "Hi", "body": "x", "status": "open", "priority": "2",
    }  # fmt: skip
    types = change_of(writer.create(row, tx)).types
    assert types["priority"] == (INT4 if schemas else INT8)
    assert types["id"] == INT8


def test_booleans_are_t_and_f() -> None:
    writer = EventWriter(columns=[("id", "int64", None, False), ("done", "boolean", None, True)])
    event = change_of(writer.create({"id": 1, "done": False}, Tx(1, 2, 3)))
    assert isinstance(event.change, RowChange) and event.change.new == {"id": "1", "done": "f"}
    assert event.types["done"] == BOOL


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"id": 1, "title": "unwrapped"}', "op is None"),
        (b'{"op": "c", "after": {"id": 1}}', "no `source` block"),
        (b'{"op": "c", "after": {"id": 1}, "source": {"schema": "public", "table": "t"}}',
         "source.ts_ms"),
        (b'{"op": "d", "before": null, "after": null, "source": {"schema": "public", '
         b'"table": "t", "ts_ms": 1}}', "REPLICA IDENTITY"),
        (b'{"op": "u", "before": null, "after": null, "source": {"schema": "public", '
         b'"table": "t", "ts_ms": 1}}', "without `after`"),
        (b'{"op": "x", "source": {}}', "op is 'x'"),
    ],
)  # fmt: skip
def test_malformed_events_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedEvent, match=reason.replace("(", r"\(").replace("`", ".")):
        decode(body, PLACEHOLDER)


def test_a_value_that_does_not_fit_its_schema_is_malformed() -> None:
    payload = json.loads(fixture("types_with_schema.json"))
    payload["payload"]["after"]["price"] = "not base64!"
    with pytest.raises(MalformedEvent, match=r"after\.price"):
        decode(json.dumps(payload).encode(), PLACEHOLDER)
