"""Deleting a tenant's data from the index, and keeping it out (`strata pipeline
delete-tenant|include-tenant`, `DELETE /admin/pipeline/tenants/{tenant}`).

`delete_tenant` removes, in one store transaction, the tenant's documents, their chunks (the
vectors of every model) and its dead letters from the chosen sources (default: every source in
the store) and counts them. The source tables are the user's and stay untouched. What becomes
of the tenant's rows still in them:

- excluded (the default): the tenant is recorded in `pipeline_excluded_tenants` in the same
  transaction, and its rows are not indexed again: not on their next change, not by a
  backfill, and their text is never sent to the embedder (the indexer drops them first; each
  index write drops them once more). `include_tenant` lifts the exclusion: rows come back on
  their next change, or all at once with `strata pipeline backfill`.
- not excluded: a row comes back on its next change (an insert, or any update to it), and all
  of them with the next backfill. Right when the rows are being deleted at the source anyway.

An exclusion without sources is recorded for source '*': every source, present and future.
Each source's lock (`index.lock_source`) is taken first, so a stream write never interleaves
with a deletion: it commits before it (and is deleted) or after it (and meets the exclusion).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from strata.errors import InvalidRequestError

EVERY_SOURCE = "*"
MAX_TENANT_CHARS = 1000


@dataclass(frozen=True)
class TenantDeletion:
    tenant: str
    sources: list[str]  # the sources deleted from
    documents: int
    chunks: int  # vectors of every model
    dead_letters: int
    excluded: bool  # its rows stay out of `sources` (of every source when none was named)

    @property
    def note(self) -> str:
        """What happens to the tenant's rows still in the source tables."""
        if self.excluded:
            return (
                f"Tenant '{self.tenant}' is excluded: its rows still in the source tables are "
                "not indexed again (lift it with `strata pipeline include-tenant`)."
            )
        return (
            f"Tenant '{self.tenant}' is not excluded: its rows still in the source tables are "
            "indexed again on their next change, and all of them by the next backfill."
        )


@dataclass(frozen=True)
class Exclusion:
    source: str  # EVERY_SOURCE: all of them
    tenant: str
    created_at: datetime


def delete_tenant(
    conn: psycopg.Connection, tenant: str, sources: Sequence[str] | None, *, exclude: bool
) -> TenantDeletion:
    """Delete `tenant`'s documents, chunks and dead letters from `sources` (None: every source
    in the store), excluding it from them first when `exclude`. `conn`: autocommit."""
    check_tenant(tenant)
    with conn.transaction():
        names = _lock_sources(conn, sources)
        if exclude:
            _exclude(conn, tenant, sources)
        chunks = _delete_chunks(conn, tenant, names)
        keys = conn.execute(
            "DELETE FROM pipeline_documents WHERE tenant = %s AND source = ANY(%s) "
            "RETURNING source, key",
            (tenant, names),
        ).fetchall()
        letters = _delete_dead_letters(conn, tenant, names, keys)
    return TenantDeletion(tenant, names, len(keys), chunks, letters, exclude)


def include_tenant(conn: psycopg.Connection, tenant: str, sources: Sequence[str] | None) -> int:
    """Lift `tenant`'s exclusions from `sources` (None: all of them, the every-source one
    included); how many were lifted."""
    check_tenant(tenant)
    return _execute(
        conn,
        "DELETE FROM pipeline_excluded_tenants WHERE tenant = %s "
        "AND (%s::text[] IS NULL OR source = ANY(%s))",
        (tenant, sources, sources),
    )


def exclusions(conn: psycopg.Connection, tenant: str | None = None) -> list[Exclusion]:
    """Every exclusion (or `tenant`'s), by tenant then source."""
    rows = conn.execute(
        "SELECT source, tenant, created_at FROM pipeline_excluded_tenants "
        "WHERE %s::text IS NULL OR tenant = %s ORDER BY tenant, source",
        (tenant, tenant),
    ).fetchall()
    return [Exclusion(*row) for row in rows]


def check_tenant(tenant: str) -> None:
    if not tenant.strip() or len(tenant) > MAX_TENANT_CHARS:
        raise InvalidRequestError(
            f"tenant: give the tenant's name as the sources' tenant column holds it "
            f"(1 to {MAX_TENANT_CHARS} characters, not blank)",
            param="tenant",
        )


def _lock_sources(conn: psycopg.Connection, sources: Sequence[str] | None) -> list[str]:
    """Lock the sources' rows in name order (so two deletions cannot deadlock); their names
    (the named ones even when the store has no index for them yet)."""
    rows = conn.execute(
        "SELECT name FROM pipeline_sources WHERE %s::text[] IS NULL OR name = ANY(%s) "
        "ORDER BY name FOR NO KEY UPDATE",
        (sources, sources),
    ).fetchall()
    return sorted(set(sources)) if sources is not None else [r[0] for r in rows]


def _exclude(conn: psycopg.Connection, tenant: str, sources: Sequence[str] | None) -> None:
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO pipeline_excluded_tenants (source, tenant) VALUES (%s, %s) "
            "ON CONFLICT DO NOTHING",
            [(source, tenant) for source in (sources or [EVERY_SOURCE])],
        )


def _delete_chunks(conn: psycopg.Connection, tenant: str, sources: list[str]) -> int:
    """Every model's vectors (pipeline_chunks exists only where pgvector is installed)."""
    row = conn.execute("SELECT to_regclass('pipeline_chunks') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return 0
    return _execute(
        conn,
        "DELETE FROM pipeline_chunks WHERE tenant = %s AND source = ANY(%s)",
        (tenant, sources),
    )


def _delete_dead_letters(
    conn: psycopg.Connection, tenant: str, sources: list[str], keys: list[tuple[str, str]]
) -> int:
    """Letters recorded with the tenant, and those from before tenants were recorded (NULL)
    whose document was the tenant's."""
    return _execute(
        conn,
        "DELETE FROM pipeline_dead_letters WHERE source = ANY(%s) AND (tenant = %s OR "
        "(tenant IS NULL AND (source, key) IN (SELECT * FROM unnest(%s::text[], %s::text[]))))",
        (sources, tenant, [s for s, _ in keys], [k for _, k in keys]),
    )


def _execute(conn: psycopg.Connection, query: str, params: Sequence[object]) -> int:
    return conn.execute(query, params).rowcount
