"""Decoder for PostgreSQL's `pgoutput` logical replication protocol (version 1).

One function, `decode(payload) -> Message`, turns the bytes of one XLogData payload into a
typed message. Layouts follow the PostgreSQL manual ("Logical Replication Message Formats"):
integers are big-endian, strings are NUL-terminated, LSNs are 64-bit, timestamps are
microseconds since 2000-01-01 UTC. Column values stay in PostgreSQL's text form; `UNCHANGED`
stands for an unchanged TOASTed value that the server did not send (tuple tag 'u').

This module knows nothing about connections, slots, tables or documents.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, TypeAlias

PG_EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)


class Unchanged:
    """An unchanged TOASTed column: the server sent no value (tuple tag 'u')."""

    _instance: Unchanged | None = None

    def __new__(cls) -> Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged()
Value: TypeAlias = str | Unchanged | None  # text form, SQL NULL, or not sent
TupleData: TypeAlias = tuple[Value, ...]


@dataclass(frozen=True)
class Begin:
    final_lsn: int
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True)
class Column:
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool  # part of the replica identity


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str  # 'd' default, 'n' nothing, 'f' full, 'i' index
    columns: tuple[Column, ...]

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace}.{self.name}"


@dataclass(frozen=True)
class Insert:
    relation_oid: int
    new: TupleData


@dataclass(frozen=True)
class Update:
    relation_oid: int
    old: TupleData | None  # key columns ('K') or the whole old row ('O'); None when not sent
    new: TupleData


@dataclass(frozen=True)
class Delete:
    relation_oid: int
    old: TupleData  # key columns ('K') or the whole old row ('O', replica identity full)


@dataclass(frozen=True)
class Truncate:
    relation_oids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True)
class Ignored:
    """A message the pipeline has no use for (origin, type, logical message)."""

    tag: str


Message: TypeAlias = Begin | Commit | Relation | Insert | Update | Delete | Truncate | Ignored
_IGNORED_TAGS: Final = frozenset("OYM")


class ProtocolError(ValueError):
    """The payload is not a valid pgoutput message."""


def decode(payload: bytes) -> Message:
    """Decode one pgoutput message; raise `ProtocolError` on malformed bytes."""
    if not payload:
        raise ProtocolError("empty pgoutput message")
    reader = _Reader(payload)
    tag = chr(reader.byte())
    decoder = _DECODERS.get(tag)
    if decoder is not None:
        try:
            return decoder(reader)
        except struct.error as exc:
            raise ProtocolError(f"truncated pgoutput {tag!r} message") from exc
    if tag in _IGNORED_TAGS:
        return Ignored(tag)
    raise ProtocolError(f"unknown pgoutput message tag {tag!r}")


def pg_timestamp(microseconds: int) -> datetime:
    """A replication-protocol timestamp as an aware UTC datetime."""
    return PG_EPOCH + timedelta(microseconds=microseconds)


def format_lsn(lsn: int) -> str:
    """An LSN in PostgreSQL's `X/X` text form."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def _unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self._data, self._pos)
        self._pos += struct.calcsize(fmt)
        return int(value)

    def byte(self) -> int:
        return self._unpack("!B")

    def int16(self) -> int:
        return self._unpack("!h")

    def int32(self) -> int:
        return self._unpack("!i")

    def uint32(self) -> int:
        return self._unpack("!I")

    def int64(self) -> int:
        return self._unpack("!q")

    def string(self) -> str:
        end = self._data.index(b"\0", self._pos)
        text = self._data[self._pos : end].decode("utf-8")
        self._pos = end + 1
        return text

    def raw(self, length: int) -> bytes:
        if self._pos + length > len(self._data):
            raise ProtocolError("column value runs past the end of the message")
        chunk = self._data[self._pos : self._pos + length]
        self._pos += length
        return chunk

    def tuple_data(self) -> TupleData:
        return tuple(self._value() for _ in range(self.int16()))

    def _value(self) -> Value:
        kind = chr(self.byte())
        if kind == "n":
            return None
        if kind == "u":
            return UNCHANGED
        if kind in "tb":  # 'b' only with the binary option, which strata does not ask for
            return self.raw(self.int32()).decode("utf-8")
        raise ProtocolError(f"unknown tuple value kind {kind!r}")


def _begin(r: _Reader) -> Begin:
    final_lsn, commit = r.int64(), r.int64()
    return Begin(final_lsn, pg_timestamp(commit), r.uint32())


def _commit(r: _Reader) -> Commit:
    r.byte()  # flags, unused
    commit_lsn, end_lsn, commit = r.int64(), r.int64(), r.int64()
    return Commit(commit_lsn, end_lsn, pg_timestamp(commit))


def _relation(r: _Reader) -> Relation:
    oid, namespace, name = r.uint32(), r.string(), r.string()
    identity = chr(r.byte())
    columns = tuple(_column(r) for _ in range(r.int16()))
    return Relation(oid, namespace or "pg_catalog", name, identity, columns)


def _column(r: _Reader) -> Column:
    flags, name, type_oid, modifier = r.byte(), r.string(), r.uint32(), r.int32()
    return Column(name, type_oid, modifier, is_key=bool(flags & 1))


def _insert(r: _Reader) -> Insert:
    oid = r.uint32()
    _expect(r, "N")
    return Insert(oid, r.tuple_data())


def _update(r: _Reader) -> Update:
    oid = r.uint32()
    tag = chr(r.byte())
    old = None
    if tag in "KO":
        old = r.tuple_data()
        tag = chr(r.byte())
    if tag != "N":
        raise ProtocolError(f"update: expected 'N', got {tag!r}")
    return Update(oid, old, r.tuple_data())


def _delete(r: _Reader) -> Delete:
    oid = r.uint32()
    tag = chr(r.byte())
    if tag not in "KO":
        raise ProtocolError(f"delete: expected 'K' or 'O', got {tag!r}")
    return Delete(oid, r.tuple_data())


def _truncate(r: _Reader) -> Truncate:
    count, options = r.int32(), r.byte()
    oids = tuple(r.uint32() for _ in range(count))
    return Truncate(oids, cascade=bool(options & 1), restart_identity=bool(options & 2))


def _expect(r: _Reader, tag: Literal["N"]) -> None:
    found = chr(r.byte())
    if found != tag:
        raise ProtocolError(f"expected {tag!r}, got {found!r}")


_DECODERS: dict[str, Callable[[_Reader], Message]] = {
    "B": _begin,
    "C": _commit,
    "R": _relation,
    "I": _insert,
    "U": _update,
    "D": _delete,
    "T": _truncate,
}
