"""A Debezium source on Redis Streams: entries as Debezium Server's `redis` sink writes them
(compact and extended formats, `default` for a null value), read through a consumer group and
XACKed after the index write; a restart takes the unacknowledged entries first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
import redis

from strata.pipeline.debezium.broker import BrokerMessage
from strata.pipeline.debezium.pipeline import DebeziumPipeline
from strata.pipeline.debezium.redis_streams import entry_id, position_of
from strata.pipeline.source import SourcePipeline
from strata.pipeline.status import source_report
from tests.pipeline.debezium.changes import Changes
from tests.pipeline.debezium.conftest import SUBJECT, debezium_source
from tests.pipeline.debezium.debezium_format import EventWriter
from tests.pipeline.debezium.test_pipeline import (
    AckFailsOnce,
    Crash,
    drain,
    primary_with_tickets,
    the_changes,
)
from tests.pipeline.support import expected_view, index_view

STREAM = SUBJECT  # the sink names the stream after the destination


class RedisPublisher:
    """Writes event values as Debezium Server's redis sink does: XADD <destination>, one entry
    per event, compact ({key JSON: value JSON}) or extended ({key, value})."""

    def __init__(self, url: str, *, extended: bool = False) -> None:
        self.client = redis.Redis.from_url(url)
        self.extended = extended

    def publish(self, bodies: Sequence[bytes], subject: str = STREAM) -> list[int]:
        ids = [self.client.xadd(subject, self._entry(body)) for body in bodies]  # type: ignore[arg-type]
        return [position_of(i) for i in ids]

    def _entry(self, body: bytes) -> dict[bytes, bytes]:
        key = _key(body) or b"default"
        value = body or b"default"  # a null value (tombstone) is written as `default`
        return {b"key": key, b"value": value} if self.extended else {key: value}


def _key(body: bytes) -> bytes | None:
    """The event key's JSON (the row's key), as the sink writes it; None for a truncate."""
    if not body:
        return b'{"id": null}'
    event = json.loads(body)
    payload = event.get("payload", event)
    row = payload.get("after") or payload.get("before")
    return json.dumps({"id": row["id"]}).encode() if row else None


@pytest.fixture
def make_redis_debezium(redis_url: str, store_dsn: str, minilm: Any, chunker: Any) -> Any:
    made: list[DebeziumPipeline] = []

    def make(**broker: Any) -> DebeziumPipeline:
        from strata.config import PipelineSettings

        source = debezium_source(
            "nats://unused",
            broker={"kind": "redis", "url": redis_url, "stream": STREAM, "subject": None,
                    **broker},
        )  # fmt: skip
        pipeline = DebeziumPipeline(
            source, PipelineSettings(sources=[source]), store_dsn, minilm, chunker
        )
        made.append(pipeline)
        pipeline.open()
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close()


def test_positions_follow_entry_ids() -> None:
    assert position_of(b"1716543210123-0") < position_of("1716543210123-7")
    assert position_of("1716543210123-7") < position_of("1716543210124-0")
    assert entry_id(position_of("1716543210123-42")) == "1716543210123-42"


@pytest.mark.parametrize("extended", [False, True])
def test_redis_stream_events_index_the_table(
    primary_dsn: str, store_dsn: str, redis_url: str, make_pipeline: Any,
    make_redis_debezium: Any, extended: bool,
) -> None:  # fmt: skip
    primary_with_tickets(primary_dsn)
    direct: SourcePipeline = make_pipeline()  # only for its mapper: what the index must hold
    publisher = RedisPublisher(redis_url, extended=extended)
    changes = Changes(primary_dsn, publisher, EventWriter())
    changes.snapshot()
    the_changes(changes)

    pipeline: DebeziumPipeline = make_redis_debezium()
    drain(pipeline)

    expected = expected_view(primary_dsn, direct.mapper, direct.indexer.chunker)
    assert index_view(store_dsn, "tickets_dbz") == expected
    assert pipeline.broker.lag().total == 0


def test_a_restart_takes_the_unacknowledged_entries_first(
    primary_dsn: str, store_dsn: str, redis_url: str, make_pipeline: Any,
    make_redis_debezium: Any,
) -> None:  # fmt: skip
    primary_with_tickets(primary_dsn)
    direct: SourcePipeline = make_pipeline()
    changes = Changes(primary_dsn, RedisPublisher(redis_url), EventWriter(schemas=False))
    changes.snapshot()
    the_changes(changes)

    first = make_redis_debezium()
    first.broker = AckFailsOnce(first.broker)
    with pytest.raises(Crash):
        drain(first)
    first.close()
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        report = source_report(conn, _redis_source(redis_url), 100)
    assert report.consumer is not None and report.consumer.unacknowledged > 0

    second = make_redis_debezium()
    redelivered: list[BrokerMessage] = []
    fetch = second.broker.fetch

    def recording(limit: int, timeout_s: float) -> list[BrokerMessage]:
        messages = fetch(limit, timeout_s)
        redelivered.extend(messages)
        return messages

    second.broker.fetch = recording
    drain(second)
    assert redelivered and redelivered[0].position == changes.published[0]  # the PEL first
    assert index_view(store_dsn, "tickets_dbz") == expected_view(
        primary_dsn, direct.mapper, direct.indexer.chunker
    )
    with psycopg.connect(store_dsn) as conn:
        samples = conn.execute(
            "SELECT count(*) FROM pipeline_freshness WHERE source = 'tickets_dbz'"
        ).fetchone()
    assert samples is not None and samples[0] == changes.commits  # none applied twice


def _redis_source(url: str) -> Any:
    return debezium_source(
        "nats://unused", broker={"kind": "redis", "url": url, "stream": STREAM, "subject": None}
    )
