"""`/admin/...`: key, tenant and usage administration over HTTP, for admin keys only.

The same operations as `strata keys|tenants|usage` (one `KeyStore` underneath, every change
audited with the acting key's id), and those of `strata pipeline delete-tenant|include-tenant|
quarantine` (`strata.pipeline.tenants`, `.quarantine`; run in a thread on a connection of their
own: the pipeline's store code is synchronous). A user key gets 403; a missing or bad key 401.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import psycopg
from fastapi import APIRouter, Depends, Query
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from strata.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from strata.gateway.identity import IssuedKey
from strata.gateway.ledger import concentration, usage_report
from strata.gateway.principal import Limits, Principal, Role
from strata.gateway.replica_time import ReplicaUsage, replica_time_report
from strata.gateway.upstream import UpstreamHealth
from strata.pipeline.quarantine import MAX_LIST, quarantined, release
from strata.pipeline.status import source_report
from strata.pipeline.tenants import delete_tenant, exclusions, include_tenant

if TYPE_CHECKING:
    from strata.gateway.runtime import GatewayRuntime

T = TypeVar("T")
SourcesQuery = Annotated[list[str] | None, Query(description="Only this pipeline source.")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitFields(_Body):
    rpm: int | None = Field(None, ge=0)
    tpm: int | None = Field(None, ge=0)
    concurrent: int | None = Field(None, ge=0)
    daily_tokens: int | None = Field(None, ge=0)
    monthly_tokens: int | None = Field(None, ge=0)
    daily_cost_usd: float | None = Field(None, ge=0)
    monthly_cost_usd: float | None = Field(None, ge=0)

    def limits(self) -> Limits:
        return Limits(**{name: getattr(self, name) for name in LimitFields.model_fields})


class KeyCreate(LimitFields):
    tenant: str
    user: str
    role: Role = "user"
    models: list[str] | None = None
    collections: list[str] | None = None
    expires_in_days: float | None = Field(None, gt=0)
    name: str | None = Field(None, max_length=200)


class TenantCreate(LimitFields):
    name: str
    require_dpa: bool = False


class TenantUpdate(LimitFields):
    require_dpa: bool | None = None


class QuarantineRelease(_Body):
    source: str = Field(min_length=1)
    key: str = Field(min_length=1)
    chunk: int | None = Field(None, ge=0)  # None: every quarantined chunk of the document


async def _admin(request: Request) -> Principal:
    """The calling key, if it is an admin's (401 without a key, 403 for a user key)."""
    runtime: GatewayRuntime = request.app.state.runtime
    principal = await runtime.gateway.authenticate(request)
    require_admin(principal)
    return principal


Admin = Annotated[Principal, Depends(_admin)]


def require_admin(principal: Principal) -> None:
    if principal.role != "admin":
        raise PermissionDeniedError(
            "This endpoint needs an admin key; user keys may only call the /v1 API.",
            code="admin_only",
        )


def admin_router(runtime: GatewayRuntime) -> APIRouter:
    router = APIRouter()

    @router.post("/keys", status_code=201)
    async def create_key(body: KeyCreate, who: Admin) -> dict[str, Any]:
        expires = None
        if body.expires_in_days is not None:
            expires = datetime.now(UTC) + timedelta(days=body.expires_in_days)
        issued = await runtime.keys.create_key(
            body.tenant,
            body.user,
            role=body.role,
            limits=body.limits(),
            models=body.models,
            collections=body.collections,
            expires_at=expires,
            name=body.name,
            actor=who.key_id,
        )
        return _issued(issued)

    @router.get("/keys")
    async def list_keys(who: Admin, tenant: str | None = None) -> dict[str, Any]:
        return {"data": [_plain(k) for k in await runtime.keys.list_keys(tenant=tenant)]}

    @router.post("/keys/{key_id}/revoke")
    async def revoke(key_id: str, who: Admin) -> dict[str, Any]:
        info = await runtime.keys.revoke(key_id, actor=who.key_id)
        runtime.auth.forget(key_id)
        runtime.dashboard_sessions.close_for_key(key_id)
        return _plain(info)

    @router.post("/keys/{key_id}/rotate", status_code=201)
    async def rotate(key_id: str, who: Admin) -> dict[str, Any]:
        issued = await runtime.keys.rotate(key_id, actor=who.key_id)
        runtime.auth.forget(key_id)
        runtime.dashboard_sessions.close_for_key(key_id)
        return _issued(issued)

    @router.get("/tenants")
    async def list_tenants(who: Admin) -> dict[str, Any]:
        return {"data": [_plain(t) for t in await runtime.keys.list_tenants()]}

    @router.post("/tenants", status_code=201)
    async def create_tenant(body: TenantCreate, who: Admin) -> dict[str, Any]:
        tenant = await runtime.keys.create_tenant(
            body.name, require_dpa=body.require_dpa, limits=body.limits(), actor=who.key_id
        )
        return _plain(tenant)

    @router.patch("/tenants/{name}")
    async def update_tenant(name: str, body: TenantUpdate, who: Admin) -> dict[str, Any]:
        limits = body.limits() if body.model_fields_set - {"require_dpa"} else None
        tenant = await runtime.keys.update_tenant(
            name, require_dpa=body.require_dpa, limits=limits, actor=who.key_id
        )
        return _plain(tenant)

    @router.get("/guard/canary")
    async def canary(who: Admin) -> dict[str, Any]:
        """The deployment's canary: put it in system prompts; an answer containing it is
        withheld (policy `canary`, default block) and counted."""
        token = getattr(runtime, "canary", None)
        if token is None:
            raise NotFoundError("The guard is off (guard.enabled: false): no canary.")
        return {"canary": token.token}

    @router.get("/alerts")
    async def list_alerts(who: Admin) -> dict[str, Any]:
        """Alerts firing, and pending (not yet held for alerts.for_s), oldest first."""
        if runtime.alerts is None:
            return {"enabled": False, "data": []}
        return {"enabled": True, "data": [_plain(a) for a in runtime.alerts.alerts()]}

    @router.get("/upstreams")
    async def list_upstreams(who: Admin) -> dict[str, Any]:
        return {"data": [_upstream(h) for h in runtime.router.health_snapshot()]}

    @router.post("/upstreams/{name}/drain")
    async def drain(name: str, who: Admin) -> dict[str, Any]:
        """The hook a cloud's preemption notice calls: no new requests, in-flight finish."""
        health = runtime.router.drain(name)
        await runtime.keys.audit(who.key_id, "upstream.drain", name)
        return _upstream(health)

    @router.post("/upstreams/{name}/undrain")
    async def undrain(name: str, who: Admin) -> dict[str, Any]:
        health = runtime.router.drain(name, draining=False)
        await runtime.keys.audit(who.key_id, "upstream.undrain", name)
        return _upstream(health)

    @router.get("/usage")
    async def usage(
        who: Admin,
        by: Literal["user", "tenant", "key", "model"] = "user",
        top: Annotated[int, Query(ge=1, le=1000)] = 10,
        since: datetime | None = None,
    ) -> dict[str, Any]:
        rows = await usage_report(runtime.pool, by=by, top=top, since=since)
        spread = await concentration(runtime.pool, by, since)
        await runtime.replica_time.flush()  # the idle time up to now
        replicas = [_replica(r) for r in await replica_time_report(runtime.pool, since)]
        return {"by": by, "data": [_plain(r) for r in rows], "concentration": _plain(spread),
                "replicas": replicas}  # fmt: skip

    @router.delete("/pipeline/tenants/{tenant}")
    async def delete_pipeline_tenant(
        tenant: str, who: Admin, source: SourcesQuery = None, exclude: bool = True
    ) -> dict[str, Any]:
        """Delete a tenant's documents, chunks and dead letters from the index (every source,
        or each `source` given). `exclude` (default) keeps its rows still in the source tables
        out from now on; without it they are indexed again on their next change."""
        names = _pipeline_sources(runtime, source)
        deletion = await _in_store(
            runtime, lambda conn: delete_tenant(conn, tenant, names, exclude=exclude)
        )
        detail = {"sources": deletion.sources, "exclude": exclude}
        await runtime.keys.audit(who.key_id, "pipeline.delete_tenant", tenant, detail)
        return {**_plain(deletion), "note": deletion.note}

    @router.get("/pipeline/exclusions")
    async def list_exclusions(who: Admin) -> dict[str, Any]:
        """Tenants kept out of the index (source '*': of every source)."""
        return {"data": [_plain(e) for e in await _in_store(runtime, exclusions)]}

    @router.delete("/pipeline/exclusions/{tenant}")
    async def lift_exclusion(
        tenant: str, who: Admin, source: SourcesQuery = None
    ) -> dict[str, Any]:
        """Index a deleted tenant's rows again: on their next change, or all by a backfill."""
        names = _pipeline_sources(runtime, source)
        lifted = await _in_store(runtime, lambda conn: include_tenant(conn, tenant, names))
        await runtime.keys.audit(who.key_id, "pipeline.include_tenant", tenant, {"sources": names})
        return {"tenant": tenant, "lifted": lifted}

    @router.get("/pipeline/status")
    async def pipeline_status(who: Admin, source: SourcesQuery = None) -> dict[str, Any]:
        """Per source (each `source` given, or all), what `strata pipeline status` shows: the
        worker that owns it and since when, slot or consumer lag, last commit applied,
        freshness percentiles, dead letters, documents and chunks."""
        names = _pipeline_sources(runtime, source)
        settings = runtime.settings.pipeline
        wanted = [s for s in settings.sources if names is None or s.name in names]
        reports = await _in_store(
            runtime,
            lambda conn: [source_report(conn, s, settings.freshness_samples) for s in wanted],
        )
        return {"data": [_plain(r) for r in reports]}

    @router.get("/pipeline/quarantine")
    async def list_quarantine(
        who: Admin,
        source: SourcesQuery = None,
        tenant: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 100,
    ) -> dict[str, Any]:
        """Chunks the guard quarantined at indexing (policy `documents: block`): never
        retrieved until released."""
        names = _pipeline_sources(runtime, source)
        found = await _in_store(
            runtime, lambda conn: quarantined(conn, sources=names, tenant=tenant, limit=limit)
        )
        return {"data": [_plain(c) for c in found]}

    @router.post("/pipeline/quarantine/release")
    async def release_quarantine(body: QuarantineRelease, who: Admin) -> dict[str, Any]:
        """Release reviewed chunks of one document: retrievable at once, until their text
        changes (a changed text is scanned again)."""
        _pipeline_sources(runtime, [body.source])
        released = await _in_store(
            runtime, lambda conn: release(conn, body.source, body.key, body.chunk, who.key_id)
        )
        if not released:
            raise NotFoundError(
                f"No quarantined chunk of document {body.key!r} in source '{body.source}'"
                + ("" if body.chunk is None else f" with chunk {body.chunk}")
                + "; see GET /admin/pipeline/quarantine.",
                code="not_quarantined",
            )
        target = f"{body.source}/{body.key}"
        await runtime.keys.audit(who.key_id, "pipeline.release", target, {"chunks": released})
        return {"source": body.source, "key": body.key, "released": released}

    return router


def _pipeline_sources(runtime: GatewayRuntime, names: list[str] | None) -> list[str] | None:
    """The named pipeline sources, each checked against pipeline.sources (None: all)."""
    if not names:
        return None
    known = {s.name for s in runtime.settings.pipeline.sources}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InvalidRequestError(
            f"source: no pipeline source named {unknown}; configured: {sorted(known)}",
            param="source",
        )
    return names


async def _in_store(runtime: GatewayRuntime, action: Callable[[psycopg.Connection], T]) -> T:
    """`action` on a connection of its own to strata's store (autocommit), in a thread."""

    def run() -> T:
        with psycopg.connect(runtime.database.conninfo, autocommit=True) as conn:
            return action(conn)

    return await asyncio.to_thread(run)


def _plain(value: Any) -> dict[str, Any]:
    """A dataclass as a JSON-ready dict (datetimes as ISO strings, nested values included)."""
    encoded: dict[str, Any] = jsonable_encoder(value)
    return encoded


def _replica(usage: ReplicaUsage) -> dict[str, Any]:
    return {**_plain(usage), "idle_share": usage.idle_share}


def _upstream(health: UpstreamHealth) -> dict[str, Any]:
    return {**_plain(health), "available": health.available}


def _issued(issued: IssuedKey) -> dict[str, Any]:
    """A new key: the secret, shown this once, next to what it allows."""
    return {"key": issued.key, **_plain(issued.info)}
