"""Debezium source fixtures: a NATS server with JetStream per test, a publisher standing in
for Debezium Server's `nats-jetstream` sink, and a factory for opened `DebeziumPipeline`s."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig

from strata.config import PipelineSettings, PipelineSourceSettings
from strata.pipeline.chunker import Chunker
from strata.pipeline.debezium.pipeline import DebeziumPipeline
from strata.pipeline.embedder import Embedder, MiniLMEmbedder
from tests.support.nats_server import NatsServer

STREAM = "DebeziumStream"
SUBJECT = "dbserver1.public.tickets"


class Publisher:
    """Publishes event bodies to JetStream as Debezium Server's sink does (one message per
    event value, on <topic.prefix>.<schema>.<table>)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def create_stream(self, name: str = STREAM, subjects: Sequence[str] = ("dbserver1.>",)) -> None:
        async def create() -> None:
            client = await nats.connect(self.url)
            await client.jetstream().add_stream(StreamConfig(name=name, subjects=list(subjects)))
            await client.close()

        asyncio.run(create())

    def publish(self, bodies: Sequence[bytes], subject: str = SUBJECT) -> list[int]:
        """Publish in order; the stream sequence of each."""

        async def send() -> list[int]:
            client = await nats.connect(self.url)
            js = client.jetstream()
            sequences = [(await js.publish(subject, body)).seq for body in bodies]
            await client.close()
            return sequences

        return asyncio.run(send())

    def delete_consumer(self, durable: str, stream: str = STREAM) -> None:
        async def delete() -> None:
            client = await nats.connect(self.url)
            await client.jetstream().delete_consumer(stream, durable)
            await client.close()

        asyncio.run(delete())


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server with JetStream for this test alone, on a free loopback port."""
    directory = tmp_path / "nats"
    directory.mkdir()
    server = NatsServer(directory)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def jetstream(nats_server: NatsServer) -> Publisher:
    """A publisher, with the stream Debezium Server would have created."""
    publisher = Publisher(nats_server.url)
    publisher.create_stream()
    return publisher


def debezium_source(url: str, **overrides: Any) -> PipelineSourceSettings:
    """The tickets table as a `kind: debezium` source (beside the direct source `tickets`)."""
    broker = {"kind": "nats", "url": url, "stream": STREAM, "subject": SUBJECT}
    broker.update(overrides.pop("broker", {}))
    fields: dict[str, Any] = {
        "name": "tickets_dbz",
        "kind": "debezium",
        "table": "public.tickets",
        "primary_key": ["id"],
        "text_columns": ["title", "body"],
        "metadata_columns": ["status", "priority"],
        "tenant_column": "org",
        "collection": "support",
        "broker": broker,
    }
    fields.update(overrides)
    return PipelineSourceSettings(**fields)


@pytest.fixture
def make_debezium(
    nats_server: NatsServer, store_dsn: str, minilm: MiniLMEmbedder, chunker: Chunker
) -> Iterator[Any]:
    """A factory for opened `DebeziumPipeline`s on this test's broker and store; closed after.
    `make_debezium(embedder=..., group_transactions=..., **source_overrides)`."""
    made: list[DebeziumPipeline] = []

    def make(
        *, embedder: Embedder | None = None, group_transactions: int = 256, **overrides: Any
    ) -> DebeziumPipeline:
        source = debezium_source(nats_server.url, **overrides)
        settings = PipelineSettings(sources=[source], group_transactions=group_transactions)
        pipeline = DebeziumPipeline(source, settings, store_dsn, embedder or minilm, chunker)
        made.append(pipeline)
        pipeline.open()
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close()  # idempotent
