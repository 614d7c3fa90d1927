"""Pipeline fixtures: the real bundled embedder (loaded once per session), strata's store
migrated on the session PostgreSQL, and the primary from tests.support.primary_postgres."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from strata.config import PipelineSettings, PipelineSourceSettings, Settings
from strata.pipeline.chunker import Chunker
from strata.pipeline.embedder import Embedder, MiniLMEmbedder, count_tokens
from strata.pipeline.source import SourcePipeline
from strata.store.database import Database


@pytest.fixture(scope="session")
def minilm() -> MiniLMEmbedder:
    """The bundled all-MiniLM-L6-v2, loaded once."""
    return MiniLMEmbedder()


@pytest.fixture(scope="session")
def chunker() -> Chunker:
    return Chunker(count_tokens, max_tokens=128)


@pytest.fixture
def store_dsn(pg_settings: Settings) -> Iterator[str]:
    """strata's store (pgvector + migrations) on this test's database."""
    with Database(pg_settings) as database:
        yield database.conninfo


def source_settings(primary_dsn: str, **overrides: Any) -> PipelineSourceSettings:
    fields: dict[str, Any] = {
        "name": "tickets",
        "dsn": SecretStr(primary_dsn),
        "table": "public.tickets",
        "text_columns": ["title", "body"],
        "metadata_columns": ["status", "priority"],
        "tenant_column": "org",
        "collection": "support",
    }
    fields.update(overrides)
    return PipelineSourceSettings(**fields)


TICKETS_DDL = """
CREATE TABLE tickets (
    id       bigint PRIMARY KEY,
    org      text,
    title    text,
    body     text,
    status   text NOT NULL DEFAULT 'open',
    priority integer NOT NULL DEFAULT 1
)"""


def run_sql(dsn: str, *statements: str, params: Any = None) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement, params)


@pytest.fixture
def make_pipeline(
    primary_dsn: str, store_dsn: str, minilm: MiniLMEmbedder, chunker: Chunker
) -> Iterator[Any]:
    """A factory for opened `SourcePipeline`s on this test's primary and store; closed after."""
    made: list[SourcePipeline] = []

    def make(*, group_transactions: int = 1, **overrides: Any) -> SourcePipeline:
        # One transaction per step unless a test asks for groups: tests step through them.
        source = source_settings(primary_dsn, **overrides)
        settings = PipelineSettings(
            sources=[source], retry_interval_s=0.01, group_transactions=group_transactions
        )
        pipeline = SourcePipeline(source, settings, store_dsn, minilm, chunker)
        made.append(pipeline)
        pipeline.open()
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close()


@pytest.fixture
def pipeline_with(primary_dsn: str, store_dsn: str, chunker: Chunker) -> Iterator[Any]:
    """Like `make_pipeline`, with the embedder a test chooses (a second model, a failing one):
    `pipeline_with(embedder, **source_overrides)`."""
    made: list[SourcePipeline] = []

    def make(embedder: Embedder, **overrides: Any) -> SourcePipeline:
        source = source_settings(primary_dsn, **overrides)
        settings = PipelineSettings(sources=[source], retry_interval_s=0.01)
        pipeline = SourcePipeline(source, settings, store_dsn, embedder, chunker)
        made.append(pipeline)
        pipeline.open()
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close()
