"""A Debezium source shared by two pipeline workers (`strata.pipeline.ownership`): one reads the
durable consumer at a time; when it stops, the other takes the source over and goes on from the
broker's acknowledged position."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from strata.config import PipelineSettings, Settings
from strata.pipeline.chunker import Chunker
from strata.pipeline.debezium.pipeline import DebeziumPipeline
from strata.pipeline.embedder import MiniLMEmbedder
from strata.pipeline.ownership import Owner, SourceLock, owner
from strata.pipeline.service import PipelineService
from strata.pipeline.source import SourcePipeline
from tests.pipeline.debezium.changes import Changes
from tests.pipeline.debezium.conftest import Publisher, debezium_source
from tests.pipeline.debezium.debezium_format import EventWriter
from tests.pipeline.debezium.test_pipeline import primary_with_tickets, the_changes
from tests.pipeline.support import expected_view, index_view
from tests.pipeline.test_ownership import end_session
from tests.support.nats_server import NatsServer


def _until(done: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_one_worker_reads_the_stream_and_the_other_takes_over_when_it_stops(
    tmp_path: Path,
    primary_dsn: str,
    store_dsn: str,
    nats_server: NatsServer,
    jetstream: Publisher,
    make_pipeline: Callable[[], SourcePipeline],
    minilm: MiniLMEmbedder,
    chunker: Chunker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    primary_with_tickets(primary_dsn)
    direct = make_pipeline()  # only for its mapper: what the index must hold
    changes = Changes(primary_dsn, jetstream, EventWriter())
    changes.snapshot()
    the_changes(changes)
    source = debezium_source(nats_server.url)

    def worker(name: str) -> PipelineService:
        pipeline = PipelineSettings(sources=[source], worker={"id": name, "poll_interval_s": 0.2})
        return PipelineService(Settings(data_dir=tmp_path, pipeline=pipeline), store_dsn, minilm)

    def indexed() -> bool:
        expected = expected_view(primary_dsn, direct.mapper, chunker)
        return index_view(store_dsn, source.name) == expected

    def held_by(name: str) -> bool:
        with psycopg.connect(store_dsn, autocommit=True) as conn:
            held = owner(conn, source.name)
        return held is not None and held.live and held.worker == name

    caplog.set_level(logging.INFO, logger="strata.pipeline.service")
    first, second = worker("worker-a"), worker("worker-b")
    first.start()
    try:
        _until(indexed, "worker-a did not index the stream")
        second.start()
        _until(lambda: "worker-b stands by" in caplog.text, "worker-b is not standing by")
        assert held_by("worker-a")
        first.stop()
        _until(lambda: held_by("worker-b"), "worker-b did not take the source over", 10.0)
        changes.commit(changes.update(1, title="Login fails on every browser"))
        changes.commit(changes.delete(5))
        _until(indexed, "worker-b did not index what came after the hand-over")
    finally:
        first.stop()
        second.stop()
    assert first.failed == second.failed == {}
    with psycopg.connect(store_dsn, autocommit=True) as conn:
        held = owner(conn, source.name)
    assert held is not None
    assert held == Owner("worker-b", held.since, False, 2)  # stopped now; handed over once


def test_a_worker_that_lost_the_source_takes_no_more_messages(
    primary_dsn: str,
    store_dsn: str,
    nats_server: NatsServer,
    jetstream: Publisher,
    minilm: MiniLMEmbedder,
    chunker: Chunker,
) -> None:
    primary_with_tickets(primary_dsn)
    changes = Changes(primary_dsn, jetstream, EventWriter())
    changes.snapshot()
    source = debezium_source(nats_server.url)
    lock = SourceLock(store_dsn, source.name, "worker-a")
    ownership = lock.try_acquire()
    assert ownership is not None
    settings = PipelineSettings(sources=[source])
    pipeline = DebeziumPipeline(source, settings, store_dsn, minilm, chunker, ownership=ownership)
    try:
        pipeline.open()
        while pipeline.step(0.3) is not None:  # the snapshot
            pass
        before = len(changes.published)
        the_changes(changes)
        end_session(store_dsn, ownership)  # cut off from the store, not from the broker
        with pytest.raises(psycopg.OperationalError):
            pipeline.step(0.3)
        lag = pipeline.broker.lag()
    finally:
        pipeline.close()
        lock.release()
    assert (lag.pending, lag.unacknowledged) == (len(changes.published) - before, 0)
