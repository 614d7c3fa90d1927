"""`/admin/...`: key, tenant and usage administration over HTTP, for admin keys only.

The same operations as `strata keys|tenants|usage` (one `KeyStore` underneath, every change
audited with the acting key's id). A user key gets 403; a missing or bad key 401.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from strata.errors import NotFoundError, PermissionDeniedError
from strata.gateway.identity import IssuedKey
from strata.gateway.ledger import concentration, usage_report
from strata.gateway.principal import Limits, Principal, Role
from strata.gateway.upstream import UpstreamHealth

if TYPE_CHECKING:
    from strata.gateway.runtime import GatewayRuntime


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
        return _plain(info)

    @router.post("/keys/{key_id}/rotate", status_code=201)
    async def rotate(key_id: str, who: Admin) -> dict[str, Any]:
        issued = await runtime.keys.rotate(key_id, actor=who.key_id)
        runtime.auth.forget(key_id)
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
        return {"by": by, "data": [_plain(r) for r in rows], "concentration": _plain(spread)}

    return router


def _plain(value: Any) -> dict[str, Any]:
    """A dataclass as a JSON-ready dict (datetimes as ISO strings, nested values included)."""
    encoded: dict[str, Any] = jsonable_encoder(value)
    return encoded


def _upstream(health: UpstreamHealth) -> dict[str, Any]:
    return {**_plain(health), "available": health.available}


def _issued(issued: IssuedKey) -> dict[str, Any]:
    """A new key: the secret, shown this once, next to what it allows."""
    return {"key": issued.key, **_plain(issued.info)}
