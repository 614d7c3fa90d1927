from __future__ import annotations

import struct

import pytest

from strata.pipeline.changes import TransactionAssembler, TruncateChange
from strata.pipeline.pgoutput import (
    UNCHANGED,
    Begin,
    Commit,
    Delete,
    Ignored,
    Insert,
    ProtocolError,
    Relation,
    Truncate,
    Update,
    decode,
    format_lsn,
    parse_lsn,
    pg_timestamp,
)


def _tuple(*values: str | object | None) -> bytes:
    out = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        else:
            data = str(value).encode()
            out += b"t" + struct.pack("!i", len(data)) + data
    return out


RELATION = (
    b"R" + struct.pack("!I", 77) + b"public\0tickets\0d" + struct.pack("!h", 2)
    + b"\x01id\0" + struct.pack("!Ii", 20, -1) + b"\x00body\0" + struct.pack("!Ii", 25, -1)
)  # fmt: skip


def test_decodes_every_message_kind() -> None:
    begin = decode(b"B" + struct.pack("!qqI", 100, 1_000_000, 9))
    assert begin == Begin(100, pg_timestamp(1_000_000), 9)
    relation = decode(RELATION)
    assert isinstance(relation, Relation) and relation.qualified_name == "public.tickets"
    assert [(c.name, c.is_key, c.type_oid) for c in relation.columns] == [
        ("id", True, 20),
        ("body", False, 25),
    ]
    assert decode(b"I" + struct.pack("!I", 77) + b"N" + _tuple("1", "hi")) == Insert(
        77, ("1", "hi")
    )
    update = decode(
        b"U" + struct.pack("!I", 77) + b"K" + _tuple("1", None) + b"N" + _tuple("2", UNCHANGED)
    )
    assert update == Update(77, ("1", None), ("2", UNCHANGED))
    assert decode(b"D" + struct.pack("!I", 77) + b"O" + _tuple("1", "x")) == Delete(77, ("1", "x"))
    truncate = decode(b"T" + struct.pack("!ib", 1, 3) + struct.pack("!I", 77))
    assert truncate == Truncate((77,), cascade=True, restart_identity=True)
    commit = decode(b"C\0" + struct.pack("!qqq", 100, 148, 1_000_000))
    assert commit == Commit(100, 148, pg_timestamp(1_000_000))
    assert decode(b"O" + b"anything") == Ignored("O")


def test_malformed_messages_raise_protocol_errors() -> None:
    with pytest.raises(ProtocolError):
        decode(b"")
    with pytest.raises(ProtocolError):
        decode(b"Z")
    with pytest.raises(ProtocolError):
        decode(b"I" + struct.pack("!I", 77) + b"N" + struct.pack("!h", 1) + b"t\0\0\0\x09ab")


def test_assembler_names_columns_and_keeps_only_key_of_old_tuple() -> None:
    assembler = TransactionAssembler()
    assert assembler.feed(decode(RELATION)) is None
    assembler.feed(decode(b"B" + struct.pack("!qqI", 100, 0, 9)))
    assert assembler.in_transaction
    assembler.feed(decode(b"D" + struct.pack("!I", 77) + b"K" + _tuple("5", None)))
    assembler.feed(decode(b"T" + struct.pack("!ib", 1, 0) + struct.pack("!I", 77)))
    transaction = assembler.feed(decode(b"C\0" + struct.pack("!qqq", 100, 148, 0)))
    assert transaction is not None and transaction.end_lsn == 148
    delete, truncate = transaction.changes
    assert not isinstance(delete, TruncateChange) and delete.old == {"id": "5"}
    assert isinstance(truncate, TruncateChange)


def test_lsn_text_round_trip() -> None:
    assert format_lsn(parse_lsn("16/B374D848")) == "16/B374D848"
