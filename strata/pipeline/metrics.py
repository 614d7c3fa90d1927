"""The pipeline's Prometheus metrics, in a registry this module owns.

`PipelineMetrics` holds them; `METRICS` is the instance the pipeline reports into by default
and the gateway can expose next to its own (`METRICS.registry`). Freshness is the time from
the source transaction's commit (the timestamp in the replication stream) to the moment its
index write has committed, i.e. the change is searchable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from strata.pipeline.indexer import ApplyStats

FRESHNESS_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class PipelineMetrics:
    """One registry with every pipeline metric, labelled by source."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.freshness = Histogram(
            "strata:pipeline_freshness_seconds",
            "Source commit to searchable in the index, per transaction.",
            ["source"],
            buckets=FRESHNESS_BUCKETS,
            registry=self.registry,
        )
        self.changes = Counter(
            "strata:pipeline_changes_total",
            "Row changes applied, by kind (upsert, metadata_only, remove, truncate).",
            ["source", "kind"],
            registry=self.registry,
        )
        self.embeddings = Counter(
            "strata:pipeline_embeddings_total",
            "Chunk embeddings computed (reused ones not counted).",
            ["source"],
            registry=self.registry,
        )
        self.reused = Counter(
            "strata:pipeline_embeddings_reused_total",
            "Chunks whose embedding was reused because their text did not change.",
            ["source"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "strata:pipeline_dead_letters_total",
            "Rows that failed to index and were put in the dead-letter table.",
            ["source"],
            registry=self.registry,
        )
        self.scanned = Counter(
            "strata:pipeline_chunks_scanned_total",
            "Chunk texts the guard scanned for indirect prompt injection (stored verdicts "
            "reused for unchanged texts not counted).",
            ["source"],
            registry=self.registry,
        )
        self.flagged = Counter(
            "strata:pipeline_chunks_flagged_total",
            "Scanned chunk texts flagged as likely prompt injection (quarantined ones included).",
            ["source"],
            registry=self.registry,
        )
        self.quarantined = Counter(
            "strata:pipeline_chunks_quarantined_total",
            "Scanned chunk texts quarantined (guard policy documents: block): never retrieved.",
            ["source"],
            registry=self.registry,
        )
        self.slot_lag = Gauge(
            "strata:pipeline_slot_lag_bytes",
            "WAL the primary retains for the source's slot beyond the confirmed position.",
            ["source"],
            registry=self.registry,
        )
        self.ownership_changes = Counter(
            "strata:pipeline_ownership_changes_total",
            "Times this process took (acquired) or gave up (released) the ownership of a source "
            "(strata.pipeline.ownership); a hand-over is a release here and an acquire elsewhere.",
            ["source", "change"],
            registry=self.registry,
        )
        self.owned = Gauge(
            "strata:pipeline_source_owned",
            "1 while this process owns the source (streams it), 0 while another worker does.",
            ["source"],
            registry=self.registry,
        )

    def count(self, source: str, stats: ApplyStats) -> None:
        """Add what one index write did (or one backfill batch) to the source's counters."""
        self.changes.labels(source, "upsert").inc(stats.upserts - stats.metadata_only)
        self.changes.labels(source, "metadata_only").inc(stats.metadata_only)
        self.changes.labels(source, "remove").inc(stats.removes)
        self.changes.labels(source, "truncate").inc(stats.truncates)
        self.embeddings.labels(source).inc(stats.embedded)
        self.reused.labels(source).inc(stats.reused)
        self.dead_letters.labels(source).inc(stats.failures)
        self.scanned.labels(source).inc(stats.scanned)
        self.flagged.labels(source).inc(stats.flagged)
        self.quarantined.labels(source).inc(stats.quarantined)


METRICS = PipelineMetrics()
