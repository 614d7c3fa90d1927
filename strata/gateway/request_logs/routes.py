"""The request logs over HTTP.

    POST   /v1/feedback                 any key: score one of its tenant's logged requests
    GET    /admin/logs                  search: tenant, user, end_user, session, q, since, until,
                                        limit (1-200, default 50), cursor (next_cursor of a page)
    GET    /admin/logs/{request_id}     one log in full with its feedback (?tenant= narrows)
    DELETE /admin/logs?tenant=NAME      delete every log and score of a tenant
    POST   /admin/logs/purge            run the retention purge now
    GET    /admin/logging               every tenant's setting, and the default retention
    GET    /admin/logging/{tenant}      one tenant's setting
    PUT    /admin/logging/{tenant}      {"enabled": bool, "retention_days": int | null}

The two GET /admin/logs routes also accept the dashboard's session cookie (they only read);
every other /admin route needs an admin key. A store that cannot be reached is a 503.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, Query
from fastapi.encoders import jsonable_encoder
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request

from strata.errors import InvalidRequestError, NotFoundError, OverloadedError
from strata.gateway.admin_api import require_admin
from strata.gateway.dashboard import admin_or_session
from strata.gateway.principal import Principal
from strata.gateway.request_logs.entry import storable
from strata.gateway.request_logs.feedback import FeedbackBody, put_score
from strata.gateway.request_logs.store import (
    MAX_LIMIT,
    LogDetail,
    LogQuery,
    check_query,
    delete_tenant_logs,
    exists,
    find,
    search,
    utc,
)
from strata.gateway.request_logs.tenants import (
    MAX_RETENTION_DAYS,
    get_setting,
    list_settings,
    set_setting,
)

if TYPE_CHECKING:
    from strata.gateway.runtime import GatewayRuntime


class LoggingUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    enabled: bool
    retention_days: int | None = Field(None, ge=1, le=MAX_RETENTION_DAYS)


async def _caller(request: Request) -> Principal:
    runtime: GatewayRuntime = request.app.state.runtime
    return await runtime.gateway.authenticate(request)


async def _admin(request: Request) -> Principal:
    principal = await _caller(request)
    require_admin(principal)
    return principal


async def _reader(request: Request) -> Principal:
    """An admin key, or the dashboard's session cookie when no key is sent."""
    return await admin_or_session(request.app.state.runtime, request)


Caller = Annotated[Principal, Depends(_caller)]
Admin = Annotated[Principal, Depends(_admin)]
Reader = Annotated[Principal, Depends(_reader)]


def request_log_router(runtime: GatewayRuntime) -> APIRouter:
    router = APIRouter()

    @router.post("/v1/feedback", status_code=201)
    async def feedback(body: FeedbackBody, who: Caller) -> dict[str, Any]:
        logs = runtime.request_logs
        async with _store():
            if not (
                logs.recorded_here(who.tenant, body.request_id)
                or await exists(runtime.pool, who.tenant, body.request_id)
            ):
                raise _no_log(body.request_id, who.tenant in logs.tenants)
            comment = None if body.comment is None else storable(logs.redact(body.comment))
            score = await put_score(runtime.pool, who.tenant, who.key_id, body, comment)
        return {"object": "feedback", **_plain(score)}

    @router.get("/admin/logs")
    async def search_logs(
        who: Reader,
        tenant: str | None = None,
        user: str | None = None,
        end_user: str | None = None,
        session: str | None = None,
        q: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        query = check_query(
            LogQuery(tenant, user, end_user, session, q, utc(since), utc(until), limit, cursor)
        )
        async with _store():
            page = await search(runtime.pool, query)
        data = [_plain(s) for s in page.data]
        return {"object": "list", "data": data, "next_cursor": page.next_cursor}

    @router.get("/admin/logs/{request_id}")
    async def show_log(request_id: str, who: Reader, tenant: str | None = None) -> dict[str, Any]:
        async with _store():
            return detail_json(await find(runtime.pool, request_id, tenant))

    @router.delete("/admin/logs")
    async def delete_logs(who: Admin, tenant: str) -> dict[str, Any]:
        """Delete a tenant's logs and scores (its logging setting stays: disable it first to
        log nothing more)."""
        async with _store():
            logs, scores = await delete_tenant_logs(runtime.pool, tenant)
            await runtime.keys.audit(who.key_id, "request_logs.delete", tenant,
                                     {"logs": logs, "scores": scores})  # fmt: skip
        return {"tenant": tenant, "logs_deleted": logs, "scores_deleted": scores}

    @router.post("/admin/logs/purge")
    async def purge(who: Admin) -> dict[str, Any]:
        async with _store():
            return {"deleted": await runtime.request_logs.purge()}

    @router.get("/admin/logging")
    async def list_logging(who: Admin) -> dict[str, Any]:
        async with _store():
            settings = await list_settings(runtime.pool)
        default = runtime.settings.request_logs.retention_days
        return {"retention_days": default, "data": [_plain(s) for s in settings]}

    @router.get("/admin/logging/{tenant}")
    async def get_logging(tenant: str, who: Admin) -> dict[str, Any]:
        async with _store():
            return _plain(await get_setting(runtime.pool, tenant))

    @router.put("/admin/logging/{tenant}")
    async def put_logging(tenant: str, body: LoggingUpdate, who: Admin) -> dict[str, Any]:
        async with _store():
            setting = await set_setting(
                runtime.pool, tenant, body.enabled, body.retention_days, actor=who.key_id
            )
        runtime.request_logs.tenants.changed(setting)
        return _plain(setting)

    return router


def detail_json(detail: LogDetail) -> dict[str, Any]:
    """One log as `GET /admin/logs/{request_id}` and `strata logs show --json` print it."""
    return {
        **_plain(detail.summary),
        "messages": detail.messages,
        "response": detail.response,
        "feedback": [_plain(f) for f in detail.feedback],
    }


def _no_log(request_id: str, logged: bool) -> NotFoundError:
    """The same answer whether the id is unknown or another tenant's."""
    if not logged:
        message = (
            "Request logs are off for your tenant, so there is no request to score; an admin "
            "turns them on with `strata logs enable <tenant>`."
        )
    else:
        message = (
            f"No logged request {request_id!r} for your tenant. Logs land about a second "
            "after the answer: if it just arrived, retry shortly."
        )
    return NotFoundError(message, code="log_not_found", param="request_id")


@asynccontextmanager
async def _store() -> AsyncIterator[None]:
    """The store unreachable or saturated: a 503 the caller may retry; a value it cannot hold
    (a NUL character in a filter or a path): a 400. Never a 500."""
    try:
        yield
    except psycopg.DataError as exc:
        raise InvalidRequestError(
            "A value in this request cannot be stored or searched (e.g. a NUL character).",
            code="invalid_value",
        ) from exc
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise OverloadedError(
            "The log store is unavailable right now; retry shortly.",
            retry_after_s=5,
            code="log_store_unavailable",
        ) from exc


def _plain(value: Any) -> dict[str, Any]:
    encoded: dict[str, Any] = jsonable_encoder(asdict(value))
    return encoded
