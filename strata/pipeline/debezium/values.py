"""Debezium's JSON column values → PostgreSQL's text form: what the direct source reads.

The direct source gets every value as PostgreSQL writes it (`1`, `t`, `2024-05-01 10:00:00+00`)
and types metadata by the column's type OID. Debezium encodes values by its own rules (the
PostgreSQL connector's "data type mappings"): numbers and booleans as JSON, `DATE` as days since
the epoch, `TIMESTAMP` as milli- or microseconds, `TIMESTAMPTZ` as an ISO string in UTC,
`NUMERIC` as base64 bytes of the unscaled value with the scale in the schema, `BYTEA` as base64.
`text_value` undoes that: it returns the PostgreSQL text form and the type OID the mapping needs,
so both sources index the same document for the same row.

With the JSON converter's schemas enabled each column's schema (`FieldType`) says how it was
encoded; without them only the JSON kind is known, so temporal and `NUMERIC` (precise mode)
values stay as Debezium wrote them (enable schemas, or use `decimal.handling.mode=string`).

Debezium's unavailable-value placeholder (an unchanged TOASTed column) becomes `UNCHANGED`, in
each form Debezium writes it: the string, its bytes in base64, a one-element array of it, and a
map of it to itself. Timestamps with a time zone come out in UTC (`+00`), as PostgreSQL writes
them for a session whose TimeZone is UTC.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final

from strata.pipeline.pgoutput import UNCHANGED, Value

BOOL, BYTEA, INT8, INT2, INT4, TEXT = 16, 17, 20, 21, 23, 25
FLOAT4, FLOAT8, DATE, TIME, TIMESTAMP, TIMESTAMPTZ = 700, 701, 1082, 1083, 1114, 1184
TIMETZ, NUMERIC, UUID, JSONB = 1266, 1700, 2950, 3802

EPOCH: Final = datetime(1970, 1, 1)
_PRIMITIVE_OIDS: Final = {
    "boolean": BOOL, "int8": INT2, "int16": INT2, "int32": INT4, "int64": INT8,
    "float32": FLOAT4, "float64": FLOAT8, "string": TEXT, "bytes": BYTEA,
}  # fmt: skip


class BadValue(ValueError):
    """A column value that does not match how Debezium encodes its type."""


@dataclass(frozen=True)
class FieldType:
    """One column's schema in an event with schemas: the Kafka Connect type (`int64`,
    `string`, `struct`, ...), its semantic name (`io.debezium.time.MicroTimestamp`) and
    parameters (`scale` of a decimal)."""

    type: str
    name: str | None = None
    parameters: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, schema: Mapping[str, Any]) -> FieldType:
        return cls(str(schema.get("type")), schema.get("name"), schema.get("parameters") or {})


def text_value(value: Any, schema: FieldType | None, placeholder: str) -> tuple[Value, int | None]:
    """The column's PostgreSQL text form (None for SQL NULL, `UNCHANGED` for the placeholder)
    and its PostgreSQL type OID when the event tells it. Raises `BadValue` when the value
    does not fit its schema."""
    if value is None:
        return None, None
    if is_placeholder(value, placeholder):
        return UNCHANGED, None
    try:
        if schema is not None and schema.name in _SEMANTIC:
            text, oid = _SEMANTIC[schema.name](value, schema)
            return text, oid
        return _plain(value, schema)
    except (TypeError, ValueError, OverflowError, binascii.Error, ArithmeticError) as exc:
        kind = schema.name or schema.type if schema else type(value).__name__
        raise BadValue(f"{value!r} is not a valid {kind} value ({exc})") from exc


def is_placeholder(value: Any, placeholder: str) -> bool:
    """Whether `value` is Debezium's unavailable-value placeholder in any of its encodings."""
    if isinstance(value, str):
        return value in (placeholder, _base64(placeholder))
    if isinstance(value, list):
        return value == [placeholder]
    if isinstance(value, dict):
        return value == {placeholder: placeholder}
    return False


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- by JSON kind and Kafka Connect type --------------------------------------------------------


def _plain(value: Any, schema: FieldType | None) -> tuple[str, int | None]:
    declared = _PRIMITIVE_OIDS.get(schema.type) if schema else None
    if isinstance(value, bool):
        return ("t" if value else "f"), BOOL
    if isinstance(value, int):
        return str(value), declared or INT8
    if isinstance(value, float):
        return _float(value), declared or FLOAT8
    if isinstance(value, list):
        return _pg_array(value), None
    if isinstance(value, dict):
        if set(value) == {"scale", "value"}:  # VariableScaleDecimal without its schema
            return _variable_decimal(value, None)
        return json.dumps(value, separators=(", ", ": ")), None
    if declared == BYTEA:
        return "\\x" + base64.b64decode(value, validate=True).hex(), BYTEA
    return str(value), declared


def _float(value: float) -> str:
    """float8 as PostgreSQL writes it (shortest round-trip form, `Infinity`, `NaN`)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def _pg_array(items: list[Any]) -> str:
    """A JSON array as a PostgreSQL array literal: {a,"b c",NULL}."""
    return "{" + ",".join(_array_item(item) for item in items) + "}"


def _array_item(item: Any) -> str:
    if item is None:
        return "NULL"
    if isinstance(item, list):
        return _pg_array(item)
    text, _ = _plain(item, None)
    plain = text and text.upper() != "NULL" and not any(c in text for c in '{},"\\ \t\n')
    return text if plain else '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- semantic types -------------------------------------------------------------------------------


def _date(value: Any, _: FieldType) -> tuple[str, int]:
    return (EPOCH + timedelta(days=int(value))).date().isoformat(), DATE


def _time(unit_per_s: int) -> Callable[[Any, FieldType], tuple[str, int]]:
    def decode(value: Any, _: FieldType) -> tuple[str, int]:
        micros = int(value) * 1_000_000 // unit_per_s
        return _clock(micros), TIME

    return decode


def _timestamp(unit_per_s: int) -> Callable[[Any, FieldType], tuple[str, int]]:
    def decode(value: Any, _: FieldType) -> tuple[str, int]:
        moment = EPOCH + timedelta(microseconds=int(value) * 1_000_000 // unit_per_s)
        return _pg_datetime(moment), TIMESTAMP

    return decode


def _zoned_timestamp(value: Any, _: FieldType) -> tuple[str, int]:
    moment = datetime.fromisoformat(str(value)).astimezone(UTC).replace(tzinfo=None)
    return _pg_datetime(moment) + "+00", TIMESTAMPTZ


def _zoned_time(value: Any, _: FieldType) -> tuple[str, int]:
    text = str(value)
    clock = time.fromisoformat(text[:-1] if text.endswith("Z") else text)
    micros = ((clock.hour * 60 + clock.minute) * 60 + clock.second) * 1_000_000
    return _clock(micros + clock.microsecond) + "+00", TIMETZ


def _decimal(value: Any, schema: FieldType) -> tuple[str, int]:
    scale = int(schema.parameters.get("scale", 0))
    return _unscaled(str(value), scale), NUMERIC


def _variable_decimal(value: Any, _: FieldType | None) -> tuple[str, int]:
    return _unscaled(str(value["value"]), int(value["scale"])), NUMERIC


def _unscaled(encoded: str, scale: int) -> str:
    """Kafka Connect's Decimal: big-endian two's complement bytes of value × 10^scale."""
    unscaled = int.from_bytes(base64.b64decode(encoded, validate=True), "big", signed=True)
    return format(Decimal(unscaled).scaleb(-scale), "f")


def _as_string(oid: int) -> Callable[[Any, FieldType], tuple[str, int]]:
    return lambda value, _: (str(value), oid)


def _clock(micros: int) -> str:
    seconds, fraction = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return f"{hour:02d}:{minute:02d}:{second:02d}" + _fraction(fraction)


def _pg_datetime(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") + _fraction(moment.microsecond)


def _fraction(micros: int) -> str:
    """PostgreSQL prints fractional seconds without trailing zeros, and none when whole."""
    return f".{micros:06d}".rstrip("0") if micros else ""


_SEMANTIC: Final[dict[str, Callable[[Any, FieldType], tuple[str, int]]]] = {
    "io.debezium.time.Date": _date,
    "org.apache.kafka.connect.data.Date": _date,
    "io.debezium.time.Time": _time(1_000),
    "org.apache.kafka.connect.data.Time": _time(1_000),
    "io.debezium.time.MicroTime": _time(1_000_000),
    "io.debezium.time.NanoTime": _time(1_000_000_000),
    "io.debezium.time.Timestamp": _timestamp(1_000),
    "org.apache.kafka.connect.data.Timestamp": _timestamp(1_000),
    "io.debezium.time.MicroTimestamp": _timestamp(1_000_000),
    "io.debezium.time.NanoTimestamp": _timestamp(1_000_000_000),
    "io.debezium.time.ZonedTimestamp": _zoned_timestamp,
    "io.debezium.time.ZonedTime": _zoned_time,
    "org.apache.kafka.connect.data.Decimal": _decimal,
    "io.debezium.data.VariableScaleDecimal": _variable_decimal,
    "io.debezium.data.Json": _as_string(JSONB),
    "io.debezium.data.Uuid": _as_string(UUID),
}
