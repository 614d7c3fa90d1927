"""The pipeline's Prometheus metrics, in a registry this module owns.

`PipelineMetrics` holds them; `METRICS` is the instance the pipeline reports into by default
and the gateway can expose next to its own (`METRICS.registry`). Freshness is the time from
the source transaction's commit (the timestamp in the replication stream) to the moment its
index write has committed, i.e. the change is searchable.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.slot_lag = Gauge(
            "strata:pipeline_slot_lag_bytes",
            "WAL the primary retains for the source's slot beyond the confirmed position.",
            ["source"],
            registry=self.registry,
        )


METRICS = PipelineMetrics()
