"""Row → document: what one source row means to the index, per the source's config.

`Mapper` turns a row (text values by column name, from the backfill or the stream) into a
`DocChange`: `Upsert` (key, tenant, metadata, text column values), `Remove` (key) or
`RemoveAll` (truncate). Values the stream did not send (unchanged TOASTed columns) stay
`UNCHANGED` here; the indexer resolves them. `render` builds the document text from the text
columns (joined by blank lines) or the template.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from strata.config import PipelineSourceSettings
from strata.pipeline.changes import Change, Row, RowChange, TruncateChange
from strata.pipeline.pgoutput import UNCHANGED, Unchanged, Value

Key = tuple[str, ...]
MetaValue: TypeAlias = Any  # JSON-able: str, int, float, bool, None, list, dict
_INTS = frozenset({20, 21, 23})  # int8, int2, int4
_FLOATS = frozenset({700, 701, 1700})  # float4, float8, numeric
_JSON = frozenset({114, 3802})  # json, jsonb
_BOOL = 16


@dataclass(frozen=True)
class Upsert:
    """A row to (re)index. Any value may be `UNCHANGED` (not sent: an unchanged TOAST value)."""

    key: Key
    tenant: str | Unchanged | None  # None: the row names no tenant, so it cannot be indexed
    metadata: dict[str, MetaValue | Unchanged] = field(default_factory=dict)
    texts: dict[str, Value] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every text column was sent."""
        return not any(v is UNCHANGED for v in self.texts.values())

    def filled_from(self, earlier: Upsert) -> Upsert:
        """This change with its unsent values taken from an earlier change to the same row."""
        return Upsert(
            self.key,
            earlier.tenant if self.tenant is UNCHANGED else self.tenant,
            _fill(self.metadata, earlier.metadata),
            _fill(self.texts, earlier.texts),
        )


@dataclass(frozen=True)
class Remove:
    key: Key


@dataclass(frozen=True)
class RemoveAll:
    """The table was truncated."""


DocChange: TypeAlias = Upsert | Remove | RemoveAll


def _fill(values: dict[str, Any], earlier: dict[str, Any]) -> dict[str, Any]:
    return {k: (earlier.get(k, v) if v is UNCHANGED else v) for k, v in values.items()}


def key_text(key: Key) -> str:
    """A key as stored in the index: the value itself, or a JSON array for composite keys."""
    return key[0] if len(key) == 1 else json.dumps(list(key))


def parse_key(text: str, width: int) -> Key:
    return (text,) if width == 1 else tuple(json.loads(text))


class Mapper:
    """Maps rows of one source to document changes."""

    def __init__(
        self, source: PipelineSourceSettings, key: tuple[str, ...], column_oids: dict[str, int]
    ) -> None:
        self.source = source
        self.key_columns = key
        self.text_columns = source.template_columns
        self._oids = column_oids

    @property
    def columns(self) -> list[str]:
        """Every column the mapping reads."""
        tenant = [self.source.tenant_column] if self.source.tenant_column else []
        names = [*self.key_columns, *self.text_columns, *self.source.metadata_columns, *tenant]
        return list(dict.fromkeys(names))

    def upsert(self, row: Row) -> Upsert:
        """The document change for a new or updated row."""
        return Upsert(
            self._key(row),
            self._tenant(row),
            {c: self._typed(c, row.get(c)) for c in self.source.metadata_columns},
            {c: row.get(c) for c in self.text_columns},
        )

    def changes(self, change: Change) -> list[DocChange]:
        """The document changes one streamed change implies."""
        if isinstance(change, TruncateChange):
            return [RemoveAll()]
        return self._row_changes(change)

    def _row_changes(self, change: RowChange) -> list[DocChange]:
        if change.kind == "delete":
            assert change.old is not None
            return [Remove(self._key(change.old))]
        assert change.new is not None
        upsert = self.upsert(change.new)
        if change.old is not None:
            old_key = self._key(change.old)
            if old_key != upsert.key:  # the primary key itself changed
                return [Remove(old_key), upsert]
        return [upsert]

    def render(self, texts: dict[str, str | None]) -> str:
        """The document text: the template filled in, or the text columns joined."""
        if self.source.template is not None:
            return self.source.template.format_map({k: v or "" for k, v in texts.items()})
        return "\n\n".join(v for c in self.text_columns if (v := texts.get(c)))

    def _key(self, row: Row) -> Key:
        values = [row.get(c) for c in self.key_columns]
        assert all(isinstance(v, str) for v in values), f"key columns missing from {row}"
        return tuple(v for v in values if isinstance(v, str))

    def _tenant(self, row: Row) -> str | Unchanged | None:
        if self.source.tenant is not None:
            return self.source.tenant
        assert self.source.tenant_column is not None
        value = row.get(self.source.tenant_column)
        return value or None if not isinstance(value, Unchanged) else value

    def _typed(self, column: str, value: Value) -> MetaValue | Unchanged:
        """A metadata value as JSON: numbers, booleans and JSON columns keep their type."""
        if value is None or isinstance(value, Unchanged):
            return value
        oid = self._oids.get(column)
        try:
            if oid in _INTS:
                return int(value)
            if oid in _FLOATS:
                return float(value)
            if oid in _JSON:
                return json.loads(value)
        except ValueError:
            return value
        if oid == _BOOL:
            return value == "t"
        return value
