"""Errors the pipeline raises on purpose; all are `strata.errors.StrataError`s.

PipelineError          pipeline configuration or state the operator must fix (not HTTP)
├── SourceError        the primary database or table cannot be streamed as configured
└── StoreNotReadyError strata's store cannot hold the index (pgvector missing, ...)
EmbeddingError         the embedding model or endpoint failed (502 at the HTTP edge)
BrokerUnavailable      a Debezium source's broker cannot be reached (retried with backoff)
"""

from __future__ import annotations

from strata.errors import StrataError, UpstreamError


class PipelineError(StrataError):
    """A pipeline source or the index is not usable as configured; the message says how to fix
    it."""


class SourceError(PipelineError):
    """The primary database, its table or its replication settings do not allow streaming."""


class StoreNotReadyError(PipelineError):
    """strata's store cannot hold the vector index (e.g. pgvector is not installed)."""


class EmbeddingError(UpstreamError):
    """The embedding model or endpoint failed; rows it could not embed go to dead letters."""


class BrokerUnavailable(StrataError):
    """A Debezium source's broker (NATS, Redis) cannot be reached or dropped the connection;
    the source is restarted from its last acknowledged event."""
