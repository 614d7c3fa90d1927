"""The data pipeline: PostgreSQL change data capture → chunks → embeddings → pgvector, and
tenant-scoped retrieval over it.

Stages, in the order a change flows through them:

    replication.ReplicationStream   pgoutput bytes from the slot (psycopg2)
    pgoutput.decode                 bytes → typed messages
    changes.TransactionAssembler    messages → committed `Transaction`s of row changes
    mapping.Mapper                  row → `Upsert` / `Remove` / `RemoveAll` document change
    indexer.Indexer                 collapse → resolve → chunk → embed changed → one write
    index.IndexStore                strata's store: documents, chunks, vectors, position
    source.SourcePipeline           the loop: step → apply → confirm LSN (and the backfill)
    debezium.DebeziumPipeline       the same loop fed by Debezium's events from NATS / Redis
    service.PipelineService         every configured source in its own thread, once it owns it
    ownership.SourceLock            one owner per source among workers (an advisory lock)
    retriever.Retriever             tenant-scoped vector search (for the gateway)

The pipeline runs without the front door and does not generate: it imports no
`strata.gateway` and no `strata.engine`.
"""

from __future__ import annotations

from strata.pipeline.embedder import Embedder, MiniLMEmbedder, OpenAIEmbedder, build_embedder
from strata.pipeline.metrics import METRICS, PipelineMetrics
from strata.pipeline.retriever import Hit, Retriever

__all__ = [
    "METRICS",
    "Embedder",
    "Hit",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "PipelineMetrics",
    "Retriever",
    "build_embedder",
]
