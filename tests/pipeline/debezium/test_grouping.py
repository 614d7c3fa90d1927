"""Cutting Debezium's event stream into whole transactions and snapshot batches."""

from __future__ import annotations

from strata.pipeline.changes import RowChange, TruncateChange
from strata.pipeline.debezium.broker import BrokerMessage
from strata.pipeline.debezium.events import MalformedEvent, decode
from strata.pipeline.debezium.grouping import Grouper, SnapshotBatch, TransactionBatch
from tests.pipeline.debezium.debezium_format import PLACEHOLDER, EventWriter, Tx

W = EventWriter(schemas=False)
T1, T2, T3 = Tx(501, 1000, 1_700_000_000_000), Tx(502, 1100, 1_700_000_001_000), Tx(503, 1200, 0)
SNAP = Tx(500, 900, 1_699_999_999_000)


def row(key: int, title: str = "t") -> dict[str, object]:
    return {"id": key, "org": "acme", "title": title, "body": "b", "status": "open", "priority": 1}


class Feed:
    """Messages with growing positions into a grouper."""

    def __init__(self, max_transactions: int = 100) -> None:
        self.grouper = Grouper(max_transactions)
        self.position = 0

    def __call__(self, *bodies: bytes) -> None:
        for body in bodies:
            self.position += 1
            message = BrokerMessage(self.position, body or None, None)
            try:
                event = decode(message.data, PLACEHOLDER)
            except MalformedEvent as exc:
                self.grouper.add(message, exc)
            else:
                self.grouper.add(message, event)


def positions(batch: TransactionBatch | SnapshotBatch) -> list[int]:
    return [m.position for m in batch.messages]


def test_events_of_one_txid_form_one_transaction() -> None:
    feed = Feed()
    feed(W.create(row(1), T1), W.create(row(2), T1), W.update(None, row(1, "x"), T2))
    (batch,) = feed.grouper.take(flush=False)
    assert isinstance(batch, TransactionBatch)
    (tx,) = batch.transactions
    assert (tx.xid, tx.end_lsn, len(tx.changes)) == (501, 2, 2)
    assert tx.commit_time.timestamp() == 1_700_000_000
    assert feed.grouper.holding  # T2 may have more events to come


def test_the_last_transaction_is_held_until_the_stream_goes_quiet() -> None:
    feed = Feed()
    feed(W.create(row(1), T1))
    assert feed.grouper.take(flush=False) == []
    feed(W.create(row(2), T1))  # more of it arrives in the next fetch
    (batch,) = feed.grouper.take(flush=True)
    assert isinstance(batch, TransactionBatch)
    assert [len(t.changes) for t in batch.transactions] == [2]
    assert not feed.grouper.holding


def test_a_transaction_metadata_end_closes_it_at_once() -> None:
    feed = Feed()
    feed(W.boundary("BEGIN", T1), W.create(row(1), T1), W.boundary("END", T1, 1))
    (batch,) = feed.grouper.take(flush=False)
    assert isinstance(batch, TransactionBatch)
    assert positions(batch) == [1, 2, 3]
    assert [t.end_lsn for t in batch.transactions] == [3]


def test_delete_tombstone_and_truncate_in_one_transaction() -> None:
    feed = Feed()
    feed(W.delete({"id": 1}, T1), W.tombstone(), W.truncate(T1), W.create(row(3), T1))
    (batch,) = feed.grouper.take(flush=True)
    assert isinstance(batch, TransactionBatch)
    (tx,) = batch.transactions
    kinds = [c.kind if isinstance(c, RowChange) else "truncate" for c in tx.changes]
    assert kinds == ["delete", "truncate", "insert"]
    assert isinstance(tx.changes[1], TruncateChange)
    assert positions(batch) == [1, 2, 3, 4]


def test_snapshot_reads_form_batches_and_mark_the_end() -> None:
    feed = Feed()
    feed(W.read(row(1), SNAP, "first"), W.read(row(2), SNAP))
    (first,) = feed.grouper.take(flush=False)
    assert isinstance(first, SnapshotBatch) and not first.ends
    assert [p for p, _ in first.rows] == [1, 2]
    feed(W.read(row(3), SNAP, "last"), W.create(row(4), T1))
    last, streamed = feed.grouper.take(flush=True)
    assert isinstance(last, SnapshotBatch) and last.ends
    assert isinstance(streamed, TransactionBatch) and streamed.transactions[0].xid == 501


def test_malformed_messages_ride_with_a_batch_for_the_dead_letters() -> None:
    feed = Feed()
    feed(W.create(row(1), T1), b"{broken", W.create(row(2), T2))
    batches = feed.grouper.take(flush=True)
    malformed = [(m.position, e.reason[:8]) for b in batches for m, e in b.malformed]
    assert malformed == [(2, "not JSON")]
    assert sorted(p for b in batches for p in positions(b)) == [1, 2, 3]


def test_groups_hold_at_most_max_transactions() -> None:
    feed = Feed(max_transactions=2)
    feed(W.create(row(1), T1), W.create(row(2), T2), W.create(row(3), T3))
    batches = feed.grouper.take(flush=True)
    assert [len(b.transactions) for b in batches if isinstance(b, TransactionBatch)] == [2, 1]


def test_events_without_a_txid_stand_alone() -> None:
    feed = Feed()
    lone = Tx(0, 5, 1)
    body = W.create(row(1), lone).replace(b'"txId": 0', b'"txId": null')
    feed(body)
    assert not feed.grouper.holding
    (batch,) = feed.grouper.take(flush=False)
    assert isinstance(batch, TransactionBatch) and batch.transactions[0].xid == 0
