"""Row changes grouped into source transactions, assembled from decoded pgoutput messages.

`TransactionAssembler.feed` takes messages in stream order and returns a `Transaction` at each
Commit: its commit time and end LSN (what the slot is confirmed up to once the transaction is
indexed) and its changes with column names attached. Relation messages are remembered so later
changes can be named. Nothing here knows about documents or the index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

from strata.pipeline.pgoutput import (
    Begin,
    Commit,
    Delete,
    Insert,
    Message,
    ProtocolError,
    Relation,
    Truncate,
    TupleData,
    Update,
    Value,
)

Row: TypeAlias = dict[str, Value]


@dataclass(frozen=True)
class RowChange:
    """One INSERT, UPDATE or DELETE. `new` is absent for a delete; `old` holds the replica
    identity columns (all columns under REPLICA IDENTITY FULL) when the server sent them."""

    kind: Literal["insert", "update", "delete"]
    relation: Relation
    new: Row | None
    old: Row | None


@dataclass(frozen=True)
class TruncateChange:
    relation: Relation


Change: TypeAlias = RowChange | TruncateChange


@dataclass(frozen=True)
class Transaction:
    """One committed source transaction, as streamed."""

    xid: int
    commit_time: datetime  # from the Begin message: the primary's commit timestamp
    commit_lsn: int
    end_lsn: int  # confirm the slot up to here once this transaction is indexed
    changes: tuple[Change, ...]


class TransactionAssembler:
    """Collects the messages between Begin and Commit into a `Transaction`."""

    def __init__(self) -> None:
        self.relations: dict[int, Relation] = {}
        self._begin: Begin | None = None
        self._changes: list[Change] = []

    @property
    def in_transaction(self) -> bool:
        """A Begin arrived and its Commit has not."""
        return self._begin is not None

    def feed(self, message: Message) -> Transaction | None:
        """Take the next message; return the transaction it completes, if any."""
        if isinstance(message, Relation):
            self.relations[message.oid] = message
        elif isinstance(message, Begin):
            self._begin, self._changes = message, []
        elif isinstance(message, Commit):
            return self._commit(message)
        elif isinstance(message, Insert):
            self._add_row("insert", message.relation_oid, message.new, None)
        elif isinstance(message, Update):
            self._add_row("update", message.relation_oid, message.new, message.old)
        elif isinstance(message, Delete):
            self._add_row("delete", message.relation_oid, None, message.old)
        elif isinstance(message, Truncate):
            self._changes.extend(TruncateChange(self._relation(o)) for o in message.relation_oids)
        return None

    def _commit(self, commit: Commit) -> Transaction:
        if self._begin is None:
            raise ProtocolError("Commit without Begin")
        begin, changes = self._begin, tuple(self._changes)
        self._begin, self._changes = None, []
        return Transaction(begin.xid, begin.commit_time, commit.commit_lsn, commit.end_lsn, changes)

    def _add_row(
        self,
        kind: Literal["insert", "update", "delete"],
        oid: int,
        new: TupleData | None,
        old: TupleData | None,
    ) -> None:
        if self._begin is None:
            raise ProtocolError(f"{kind} outside a transaction")
        relation = self._relation(oid)
        self._changes.append(
            RowChange(kind, relation, _named(relation, new), _old_row(relation, old))
        )

    def _relation(self, oid: int) -> Relation:
        relation = self.relations.get(oid)
        if relation is None:
            raise ProtocolError(f"change for relation {oid} before its Relation message")
        return relation


def _named(relation: Relation, values: TupleData | None) -> Row | None:
    if values is None:
        return None
    if len(values) != len(relation.columns):
        raise ProtocolError(f"{relation.qualified_name}: tuple does not match its columns")
    return {column.name: value for column, value in zip(relation.columns, values, strict=True)}


def _old_row(relation: Relation, values: TupleData | None) -> Row | None:
    """The old tuple; under a key-only identity just the key columns (the rest are NULLs)."""
    row = _named(relation, values)
    if row is None or relation.replica_identity == "f":
        return row
    return {c.name: row[c.name] for c in relation.columns if c.is_key}
