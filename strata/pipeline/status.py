"""What `strata pipeline status` reports per source: the worker that owns it and since when
(`strata.pipeline.ownership`), slot lag (for a Debezium source, the messages its broker consumer
is behind), last commit applied, freshness percentiles, dead letters, document and chunk counts,
tenants excluded from it. Read from strata's store and the primary (or the broker)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from strata.config import PipelineSourceSettings
from strata.pipeline.debezium.broker import BrokerLag, consumer_lag
from strata.pipeline.ownership import Owner, owner
from strata.pipeline.pgoutput import format_lsn
from strata.pipeline.primary import SlotStatus, slot_status
from strata.pipeline.source import slot_name


@dataclass(frozen=True)
class SourceReport:
    name: str
    collection: str
    documents: int
    chunks: int
    dead_letters: int
    applied_lsn: str | None
    last_commit_at: datetime | None
    last_applied_at: datetime | None
    backfilled_at: datetime | None
    freshness_p50_s: float | None
    freshness_p95_s: float | None
    freshness_p99_s: float | None
    freshness_samples: int
    slot: SlotStatus | None
    slot_error: str | None  # why the primary could not be asked
    excluded_tenants: list[str]  # kept out by `strata pipeline delete-tenant`
    consumer: BrokerLag | None = None  # kind debezium: messages its durable reader is behind
    owner: Owner | None = None  # the worker streaming it (None: none ever has)


def source_report(
    store: psycopg.Connection, source: PipelineSourceSettings, samples: int
) -> SourceReport:
    """One source's report; the primary being unreachable is reported, not raised."""
    name = source.name
    state = store.execute(
        "SELECT applied_lsn, last_commit_at, last_applied_at, backfilled_at "
        "FROM pipeline_sources WHERE name = %s",
        (name,),
    ).fetchone() or (None, None, None, None)
    counts = store.execute(
        "SELECT (SELECT count(*) FROM pipeline_documents WHERE source = %s), "
        "(SELECT count(*) FROM pipeline_chunks WHERE source = %s), "
        "(SELECT count(*) FROM pipeline_dead_letters WHERE source = %s)",
        (name, name, name),
    ).fetchone()
    assert counts is not None
    fresh = store.execute(
        "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY seconds), "
        "count(*) FROM (SELECT seconds FROM pipeline_freshness WHERE source = %s "
        "ORDER BY id DESC LIMIT %s) recent",
        (name, samples),
    ).fetchone()
    assert fresh is not None
    p50, p95, p99 = fresh[0] or (None, None, None)
    excluded = store.execute(
        "SELECT DISTINCT tenant FROM pipeline_excluded_tenants WHERE source IN (%s, '*') "
        "ORDER BY tenant",
        (name,),
    ).fetchall()
    consumer: BrokerLag | None = None
    if source.kind == "debezium":  # a broker's durable reader instead of a slot
        slot, (consumer, error) = None, consumer_lag(source)
        lsn = f"#{state[0]}" if state[0] else None  # the broker position
    else:
        slot, error = _slot(source)
        lsn = format_lsn(state[0]) if state[0] else None
    return SourceReport(
        name=name,
        collection=source.collection,
        documents=int(counts[0]),
        chunks=int(counts[1]),
        dead_letters=int(counts[2]),
        applied_lsn=lsn,
        last_commit_at=state[1],
        last_applied_at=state[2],
        backfilled_at=state[3],
        freshness_p50_s=p50,
        freshness_p95_s=p95,
        freshness_p99_s=p99,
        freshness_samples=int(fresh[1]),
        slot=slot,
        slot_error=error,
        excluded_tenants=[row[0] for row in excluded],
        consumer=consumer,
        owner=owner(store, name),
    )


def _slot(source: PipelineSourceSettings) -> tuple[SlotStatus | None, str | None]:
    try:
        with psycopg.connect(source.dsn.get_secret_value(), connect_timeout=5) as conn:
            return slot_status(conn, slot_name(source.name)), None
    except psycopg.Error as exc:
        return None, str(exc).strip().splitlines()[0]
