"""A Debezium source end to end: Debezium-format events through NATS JetStream index exactly
what the direct pgoutput source indexes for the same changes on a real primary; a crash at any
point loses nothing and applies nothing twice; malformed events are dead-lettered without
blocking the stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
import pytest

from strata.pipeline.debezium.broker import Broker, BrokerMessage
from strata.pipeline.debezium.pipeline import DebeziumPipeline
from strata.pipeline.errors import PipelineError
from strata.pipeline.source import SourcePipeline
from strata.pipeline.status import source_report
from tests.pipeline.conftest import TICKETS_DDL, run_sql
from tests.pipeline.debezium.changes import Changes
from tests.pipeline.debezium.conftest import Publisher
from tests.pipeline.debezium.debezium_format import EventWriter, Tx
from tests.pipeline.support import HookedEmbedder, expected_view, index_view, settle

LONG_BODY = " ".join(
    f"paragraph {i} about the refund workflow and its edge cases" for i in range(60)
)


class Crash(BaseException):
    """Stands in for the process dying at that point (no `except Exception` catches it)."""


def index_rows(store_dsn: str, source: str) -> dict[str, Any]:
    """Everything the index holds for `source` that both kinds of source must agree on: per
    key the tenant, metadata, text hashes and (chunk number, text, content hash)."""
    with psycopg.connect(store_dsn) as conn:
        docs = conn.execute(
            "SELECT key, tenant, collection, metadata, text_hashes FROM pipeline_documents "
            "WHERE source = %s",
            (source,),
        ).fetchall()
        chunks = conn.execute(
            "SELECT key, chunk_no, tenant, metadata, content, content_hash, model, dims "
            "FROM pipeline_chunks WHERE source = %s ORDER BY key, chunk_no",
            (source,),
        ).fetchall()
    rows: dict[str, Any] = {key: [rest, []] for key, *rest in docs}
    for key, *rest in chunks:
        rows[key][1].append(tuple(bytes(v) if isinstance(v, memoryview) else v for v in rest))
    return rows


def drain(pipeline: DebeziumPipeline) -> list[Any]:
    """Step until the stream has nothing more (nothing fetched, nothing held)."""
    stats = []
    while (result := pipeline.step(0.3)) is not None:
        stats.append(result)
    return stats


def primary_with_tickets(primary_dsn: str) -> None:
    """The table with a body that PostgreSQL stores out of line (TOAST) when long."""
    run_sql(
        primary_dsn,
        TICKETS_DDL,
        "ALTER TABLE tickets ALTER COLUMN body SET STORAGE EXTERNAL",
        "INSERT INTO tickets VALUES (1, 'acme', 'Login fails', 'The login page times out.', "
        "'open', 2), (2, 'acme', 'Refunds', %(long)s, 'open', 1), "
        "(3, 'globex', 'Invoice', 'Invoice total is wrong.', 'open', 3), "
        "(4, 'globex', 'Export', 'CSV export drops rows.', 'pending', 1)",
        params={"long": LONG_BODY},
    )


def the_changes(changes: Changes) -> None:
    """A bit of everything the mapping distinguishes, one source transaction per commit."""
    c = changes
    c.commit(c.insert(id=5, org="acme", title="Billing", body="Card declined.", status="open",
                      priority=1),
             c.insert(id=6, org="initech", title="VPN", body="VPN drops hourly.", status="open",
                      priority=2))  # fmt: skip
    c.commit(c.update(1, title="Login fails on Safari"))  # text changed
    c.commit(c.update(2, toasted=("body",), status="closed"))  # metadata only, body TOASTed
    c.commit(c.update(2, toasted=("body",), priority=5, org="globex"))  # tenant moves
    c.commit(c.delete(3))
    c.commit(c.rekey(4, 40))  # the key itself changes
    c.commit(c.update(5, title="Billing (card)", body="Card declined twice."))
    c.commit(c.insert(id=7, org=None, title="Orphan", body="No tenant.", status="open",
                      priority=1))  # fmt: skip
    c.commit(c.update(6, status="closed"), c.update(6, body="VPN fixed by update."))


def test_jetstream_events_index_the_same_as_the_direct_source(
    primary_dsn: str, store_dsn: str, jetstream: Publisher, make_pipeline: Any,
    make_debezium: Any,
) -> None:  # fmt: skip
    primary_with_tickets(primary_dsn)
    direct: SourcePipeline = make_pipeline()
    direct.start()  # backfill from the primary, then stream
    changes = Changes(primary_dsn, jetstream, EventWriter())
    changes.snapshot()  # Debezium's initial snapshot of the same rows
    the_changes(changes)
    changes.publish([b"{not an event", EventWriter(table="other").create({"id": 1}, _tx())])
    garbage = changes.published[-2]
    changes.commit(changes.truncate(), changes.insert(id=8, org="acme", title="After truncate",
                   body="Fresh start.", status="open", priority=1))  # fmt: skip
    changes.commit(changes.insert(id=9, org="acme", title="Last", body="Done.", status="new",
                                  priority=4))  # fmt: skip
    settle(direct)

    debezium: DebeziumPipeline = make_debezium()
    drain(debezium)

    expected = index_rows(store_dsn, "tickets")
    assert sorted(expected) == ["8", "9"]  # the truncate emptied it before these
    assert index_rows(store_dsn, "tickets_dbz") == expected
    assert debezium.state.applied_lsn == changes.published[-1]
    assert debezium.state.backfilled_at is not None  # the snapshot finished
    assert _dead_letters(store_dsn, "tickets_dbz") == [f"@{garbage}"]  # and nothing blocked


def test_before_the_truncate_the_indexes_agree_row_by_row(
    primary_dsn: str, store_dsn: str, jetstream: Publisher, make_pipeline: Any,
    make_debezium: Any,
) -> None:  # fmt: skip
    primary_with_tickets(primary_dsn)
    direct: SourcePipeline = make_pipeline()
    direct.start()
    changes = Changes(primary_dsn, jetstream, EventWriter(schemas=False))
    changes.snapshot()
    the_changes(changes)
    settle(direct)
    debezium: DebeziumPipeline = make_debezium()
    drain(debezium)

    expected = index_rows(store_dsn, "tickets")
    assert sorted(expected) == ["1", "2", "40", "5", "6"]
    assert expected["2"][0][:2] == ["globex", "support"]  # the tenant moved; body kept
    assert index_rows(store_dsn, "tickets_dbz") == expected
    assert index_view(store_dsn, "tickets_dbz") == expected_view(
        primary_dsn, direct.mapper, direct.indexer.chunker
    )


def test_a_crash_before_or_after_the_write_loses_nothing_and_repeats_nothing(
    primary_dsn: str, store_dsn: str, jetstream: Publisher, make_pipeline: Any,
    make_debezium: Any, minilm: Any,
) -> None:  # fmt: skip
    primary_with_tickets(primary_dsn)
    direct: SourcePipeline = make_pipeline()
    direct.start()
    changes = Changes(primary_dsn, jetstream, EventWriter())
    changes.snapshot()
    the_changes(changes)
    settle(direct)

    # 1. dies while embedding its second write: nothing of that write lands, nothing acked
    def die_on_second(call: int) -> None:
        if call == 2:
            raise Crash

    first = make_debezium(embedder=HookedEmbedder(minilm, die_on_second), group_transactions=2)
    with pytest.raises(Crash):
        drain(first)
    first.close()
    applied_before = _applied(store_dsn)
    assert 0 < applied_before < changes.published[-1]

    # 2. dies after a write committed, before its acknowledgements reached the broker
    second = make_debezium(group_transactions=2)
    second.broker = AckFailsOnce(second.broker)
    with pytest.raises(Crash):
        drain(second)
    second.close()
    assert _applied(store_dsn) > applied_before  # written, never acknowledged

    # 3. a fresh process: the unacknowledged events come again at once; applied ones are
    #    recognised by the stored position, the rest applied
    third = make_debezium(group_transactions=2)
    assert drain(third)
    assert index_rows(store_dsn, "tickets_dbz") == index_rows(store_dsn, "tickets")
    assert _freshness_samples(store_dsn, "tickets_dbz") == changes.commits  # each once
    assert third.broker.lag().total == 0


def test_a_deleted_consumer_is_recreated_where_the_index_left_off(
    primary_dsn: str, store_dsn: str, jetstream: Publisher, make_debezium: Any
) -> None:
    run_sql(primary_dsn, TICKETS_DDL)
    changes = Changes(primary_dsn, jetstream, EventWriter())
    changes.commit(changes.insert(id=1, org="acme", title="One", body="First.", status="open",
                                  priority=1))  # fmt: skip
    first = make_debezium()
    drain(first)
    first.close()
    jetstream.delete_consumer("strata_tickets_dbz")
    changes.commit(changes.update(1, title="One, edited"))

    second = make_debezium()
    fetched = second.broker.fetch(10, 1.0)
    assert [m.position for m in fetched] == changes.published[-1:]  # not from the start
    second.broker.ack(fetched)


def test_an_index_positioned_on_another_stream_is_refused(
    primary_dsn: str, store_dsn: str, jetstream: Publisher, make_debezium: Any
) -> None:
    make_debezium().close()
    with pytest.raises(PipelineError, match=r"broker\.stream"):
        make_debezium(broker={"stream": "ElsewhereStream"})
    make_debezium(broker={"durable": "another_name"}).close()  # same stream: same positions


def test_status_shows_the_consumer_lag(
    primary_dsn: str, store_dsn: str, jetstream: Publisher, make_debezium: Any, nats_server: Any
) -> None:
    from tests.pipeline.debezium.conftest import debezium_source

    run_sql(primary_dsn, TICKETS_DDL)
    changes = Changes(primary_dsn, jetstream, EventWriter())
    pipeline = make_debezium()  # creates the durable consumer
    for i in range(3):
        changes.commit(changes.insert(id=i, org="acme", title=f"T{i}", body="B.", status="open",
                                      priority=1))  # fmt: skip
    source = debezium_source(nats_server.url)
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        before = source_report(conn, source, 100)
        drain(pipeline)
        after = source_report(conn, source, 100)
    assert before.consumer is not None and before.consumer.total == 3
    assert after.consumer is not None and after.consumer.total == 0
    assert after.applied_lsn == f"#{changes.published[-1]}" and after.documents == 3
    assert after.slot is None


# --- helpers -------------------------------------------------------------------------------------


def _tx() -> Tx:
    return Tx(1, 1, 1)


def _dead_letters(store_dsn: str, source: str) -> list[str]:
    with psycopg.connect(store_dsn) as conn:
        rows = conn.execute(
            "SELECT key FROM pipeline_dead_letters WHERE source = %s ORDER BY key", (source,)
        ).fetchall()
    return [r[0] for r in rows]


def _applied(store_dsn: str, source: str = "tickets_dbz") -> int:
    with psycopg.connect(store_dsn) as conn:
        row = conn.execute(
            "SELECT applied_lsn FROM pipeline_sources WHERE name = %s", (source,)
        ).fetchone()
    return int(row[0]) if row else 0


def _freshness_samples(store_dsn: str, source: str) -> int:
    with psycopg.connect(store_dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pipeline_freshness WHERE source = %s", (source,)
        ).fetchone()
    return int(row[0]) if row else 0


class AckFailsOnce:
    """A broker whose first acknowledgement is lost with the process that sent it."""

    def __init__(self, inner: Broker) -> None:
        self.inner = inner
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def ack(self, messages: Sequence[BrokerMessage]) -> None:
        if not self.failed:
            self.failed = True
            raise Crash
        self.inner.ack(messages)
