"""Debezium's value encodings → PostgreSQL's text form (checked against what PostgreSQL 18
prints for the same values with TimeZone UTC)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from strata.pipeline.debezium.events import ChangeEvent, decode
from strata.pipeline.debezium.values import (
    BYTEA,
    DATE,
    FLOAT8,
    INT8,
    JSONB,
    NUMERIC,
    TIME,
    TIMESTAMP,
    TIMESTAMPTZ,
    UUID,
    BadValue,
    FieldType,
    is_placeholder,
    text_value,
)
from strata.pipeline.pgoutput import UNCHANGED
from tests.pipeline.debezium.debezium_format import PLACEHOLDER

FIXTURES = Path(__file__).parent / "fixtures"


def test_every_type_of_the_fixture_reads_as_postgresql_writes_it() -> None:
    event = decode((FIXTURES / "types_with_schema.json").read_bytes(), PLACEHOLDER)
    assert isinstance(event, ChangeEvent)
    assert event.change.new == {  # type: ignore[union-attr]
        "id": "9007199254740993",
        "active": "t",
        "ratio": "0.25",
        "born": "2024-05-01",
        "opens": "09:30:00",
        "seen": "2024-05-24 09:33:30.123456",
        "seen_ms": "2024-05-24 09:33:30.12",
        "updated_at": "2024-05-24 09:33:30.1234+00",
        "price": "1234.50",
        "refund": "-1.25",
        "pi": "3.1415926",
        "blob": "\\x00ff6869",
        "attrs": '{"color": "red", "size": 3}',
        "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "tags": '{urgent,"two words",NULL}',
        "note": "",
    }
    assert event.types["born"] == DATE and event.types["opens"] == TIME
    assert event.types["seen"] == TIMESTAMP and event.types["updated_at"] == TIMESTAMPTZ
    assert event.types["price"] == NUMERIC and event.types["pi"] == NUMERIC
    assert event.types["blob"] == BYTEA and event.types["attrs"] == JSONB
    assert event.types["ref"] == UUID and "tags" not in event.types


@pytest.mark.parametrize(
    ("value", "text", "oid"),
    [
        (1, "1", INT8),
        (-3, "-3", INT8),
        (2.0, "2", FLOAT8),
        (0.1, "0.1", FLOAT8),
        (1e20, "1e+20", FLOAT8),
        (True, "t", 16),
        ("plain", "plain", None),
        ({"scale": 2, "value": base64.b64encode(b"\x30\x39").decode()}, "123.45", NUMERIC),
        ([1, 2], "{1,2}", None),
        ([["a", "b"], ["c", "NULL"]], '{{a,b},{c,"NULL"}}', None),
    ],
)
def test_without_a_schema_the_json_kind_decides(value: object, text: str, oid: int | None) -> None:
    assert text_value(value, None, PLACEHOLDER) == (text, oid)


@pytest.mark.parametrize(
    ("value", "schema", "text"),
    [
        (0, FieldType("int32", "io.debezium.time.Date"), "1970-01-01"),
        (-1, FieldType("int32", "io.debezium.time.Date"), "1969-12-31"),
        (45_296_789, FieldType("int32", "io.debezium.time.Time"), "12:34:56.789"),
        (45_296_000_001_000, FieldType("int64", "io.debezium.time.NanoTime"), "12:34:56.000001"),
        (1_500, FieldType("int64", "org.apache.kafka.connect.data.Timestamp"),
         "1970-01-01 00:00:01.5"),
        ("2024-01-02T03:04:05+02:00", FieldType("string", "io.debezium.time.ZonedTimestamp"),
         "2024-01-02 01:04:05+00"),
        ("10:15:30.5Z", FieldType("string", "io.debezium.time.ZonedTime"), "10:15:30.5+00"),
        (base64.b64encode(b"\x00").decode(),
         FieldType("bytes", "org.apache.kafka.connect.data.Decimal", {"scale": "3"}), "0.000"),
        ("AQ==", FieldType("bytes", "org.apache.kafka.connect.data.Decimal", {"scale": "0"}),
         "1"),
        ("AQI=", FieldType("bytes"), "\\x0102"),
        ("x", FieldType("string", "io.debezium.data.Enum"), "x"),
    ],
)  # fmt: skip
def test_semantic_types(value: object, schema: FieldType, text: str) -> None:
    assert text_value(value, schema, PLACEHOLDER)[0] == text


@pytest.mark.parametrize(
    "value",
    [
        PLACEHOLDER,
        base64.b64encode(PLACEHOLDER.encode()).decode(),  # a bytea column
        [PLACEHOLDER],  # an array column
        {PLACEHOLDER: PLACEHOLDER},  # an hstore column in map mode
    ],
)
def test_the_placeholder_in_every_encoding_is_unchanged(value: object) -> None:
    assert is_placeholder(value, PLACEHOLDER)
    assert text_value(value, FieldType("string"), PLACEHOLDER) == (UNCHANGED, None)


def test_null_is_null() -> None:
    assert text_value(None, FieldType("string"), PLACEHOLDER) == (None, None)


def test_a_bad_value_names_its_type() -> None:
    with pytest.raises(BadValue, match="MicroTimestamp"):
        text_value("soon", FieldType("int64", "io.debezium.time.MicroTimestamp"), PLACEHOLDER)
