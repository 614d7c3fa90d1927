"""`/dashboard`: the live metrics page, for admins only, and the routes behind it.

    GET    /dashboard                 the page to an admin (bearer key or session cookie);
                                      otherwise a login page (401) that asks for an admin key
    POST   /admin/dashboard/session   admin bearer key -> session cookie (see dashboard_sessions)
    DELETE /admin/dashboard/session   log out: ends the cookie's session
    GET    /admin/dashboard/data      the sampler's points after `since` (Unix seconds), and the
                                      active alerts; admin bearer key or session cookie

The login page sends the key in an `Authorization` header from script, never in a URL, so it
cannot land in an access log or the browser's history. A session cookie is accepted by these
routes and by the two read-only request-log routes the page searches (`GET /admin/logs` and
`GET /admin/logs/{request_id}`, through `admin_or_session`); every other `/admin` route still
needs the key itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from fastapi import APIRouter
from fastapi.encoders import jsonable_encoder
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from strata.errors import AuthenticationError
from strata.gateway.admin_api import require_admin
from strata.gateway.dashboard_sessions import COOKIE
from strata.gateway.principal import Principal
from strata.telemetry.dashboard_page import DASHBOARD, LOGIN, Page, load_page

if TYPE_CHECKING:
    from strata.gateway.runtime import GatewayRuntime


class AlertFeed(Protocol):
    """What the dashboard reads from the alert rules (`strata.telemetry.alerts.AlertService`):
    pending and firing alerts with `rule`, `labels`, `severity`, `state`, `since`, `message`."""

    def alerts(self) -> Sequence[Any]: ...


def dashboard_router(runtime: GatewayRuntime) -> APIRouter:
    router = APIRouter()
    pages = {name: load_page(name) for name in (DASHBOARD, LOGIN)}

    @router.get("/dashboard", include_in_schema=False)
    async def page(request: Request) -> Response:
        try:
            await admin_or_session(runtime, request)
        except AuthenticationError:
            return _login_page(pages[LOGIN], request)
        return _html(pages[DASHBOARD])

    @router.post("/admin/dashboard/session", status_code=201, include_in_schema=False)
    async def log_in(request: Request) -> Response:
        principal = await runtime.gateway.authenticate(request)
        require_admin(principal)
        token = runtime.dashboard_sessions.open(principal)
        await runtime.keys.audit(principal.key_id, "dashboard.login", principal.key_id)
        ttl_s = runtime.dashboard_sessions.ttl_s
        reply = JSONResponse({"expires_in_s": ttl_s}, status_code=201)
        reply.set_cookie(COOKIE, token, max_age=int(ttl_s), path="/", httponly=True,
                         samesite="strict", secure=_secure(runtime))  # fmt: skip
        return reply

    @router.delete("/admin/dashboard/session", status_code=204, include_in_schema=False)
    async def log_out(request: Request) -> Response:
        runtime.dashboard_sessions.close(request.cookies.get(COOKIE))
        reply = Response(status_code=204)
        reply.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return reply

    @router.get("/admin/dashboard/data", include_in_schema=False)
    async def data(request: Request, since: float | None = None) -> Response:
        await admin_or_session(runtime, request)
        points = runtime.sampler.since(since)
        return JSONResponse({
            "interval_s": runtime.sampler.interval_s,
            "points": [p.as_json() for p in points],
            "alerts": _alerts(runtime.alerts),
        })  # fmt: skip

    return router


async def admin_or_session(runtime: GatewayRuntime, request: Request) -> Principal:
    """The admin looking: by bearer key when one is sent (a user key gets 403), else by
    dashboard session cookie; `AuthenticationError` when neither is valid. For read-only
    routes only: a cookie must not be able to change anything."""
    if request.headers.get("authorization"):
        principal = await runtime.gateway.authenticate(request)
        require_admin(principal)
        return principal
    found = runtime.dashboard_sessions.principal(request.cookies.get(COOKIE))
    if found is None:
        raise AuthenticationError(
            "Log in at /dashboard with an admin key, or send 'Authorization: Bearer <admin key>'.",
            code="dashboard_login_required",
        )
    return found


def _alerts(feed: AlertFeed | None) -> list[Any] | None:
    """The pending and firing alerts as JSON objects; None when the alert rules are off."""
    if feed is None:
        return None
    return [jsonable_encoder(alert) for alert in feed.alerts()]


def _html(page: Page, status_code: int = 200) -> Response:
    return Response(page.html, status_code, headers=page.headers, media_type="text/html")


def _login_page(page: Page, request: Request) -> Response:
    reply = _html(page, 401)
    if COOKIE in request.cookies:  # stale or forged: the browser may forget it
        reply.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return reply


def _secure(runtime: GatewayRuntime) -> bool:
    """Mark the cookie `Secure` when the gateway itself serves TLS."""
    return runtime.settings.gateway.tls_certfile is not None
