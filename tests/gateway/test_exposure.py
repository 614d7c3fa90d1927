"""What the gateway exposes, over real HTTP: walking every route the app serves, nothing but
health and readiness answers without a key (the dashboard shows its login form with a 401);
every `/admin` route refuses a user key (403) and a missing or bad key (401); `/metrics` is for
admin keys only."""

from __future__ import annotations

from typing import Any, cast

import httpx
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from strata.gateway.app import build_gateway_app
from strata.gateway.hot_routes import HotRoutes
from tests.support.live_gateway import LiveGateway

# Routes anyone may call, and why.
PUBLIC = {
    ("GET", "/healthz"),  # liveness
    ("GET", "/readyz"),  # readiness, for load balancers
    ("DELETE", "/admin/dashboard/session"),  # log out: ends the caller's own cookie session
}
HOT = [("POST", "/v1/chat/completions"), ("POST", "/v1/completions")]
BAD_KEYS = ["", "sk-nope", "sk-strata-abcdefghijkl_wrongsecretwrongsecretwrongsecret00"]


def _routes(gateway: LiveGateway) -> list[tuple[str, str]]:
    """(method, path) of every route, path parameters filled in."""
    app = cast(FastAPI, cast(HotRoutes, build_gateway_app(gateway.runtime)).app)
    found = list(HOT)
    for route in iter_route_contexts(app.routes):  # the included routers' routes too
        if route.path is not None and route.methods:
            path = route.path.replace("{", "").replace("}", "")  # /keys/{key_id} → /keys/key_id
            found += [(m, path) for m in sorted(route.methods) if m != "HEAD"]
    return found


def _call(http: httpx.Client, method: str, path: str) -> httpx.Response:
    body: Any = {} if method in ("POST", "PUT", "PATCH") else None
    return http.request(method, path, json=body)


def test_nothing_but_health_and_the_login_page_is_public(gateway: LiveGateway) -> None:
    routes = _routes(gateway)
    assert len(routes) >= 30 and ("GET", "/metrics") in routes
    for key in BAD_KEYS:
        with gateway.http(key or None) as http:
            for method, path in routes:
                if (method, path) in PUBLIC:
                    continue
                reply = _call(http, method, path)
                assert reply.status_code == 401, (key, method, path, reply.text)
                if path != "/dashboard":  # the dashboard answers with its login form
                    assert reply.json()["error"]["type"] == "authentication_error"
    with gateway.http() as http:
        page = http.get("/dashboard")
        assert "<form" in page.text and "strata:" not in page.text  # no data, just a form
        assert http.get("/openapi.json").status_code == 404  # no schema of the admin API


def test_every_admin_route_refuses_a_user_key(gateway: LiveGateway) -> None:
    admin = [(m, p) for m, p in _routes(gateway) if p.startswith("/admin")]
    assert len(admin) >= 20
    user = gateway.create_key(tenant="acme", user="alice")
    with gateway.http(user) as http:
        for method, path in [*admin, ("GET", "/metrics"), ("GET", "/dashboard")]:
            if (method, path) in PUBLIC:
                continue
            reply = _call(http, method, path)
            assert reply.status_code == 403, (method, path, reply.text)
            assert reply.json()["error"]["type"] == "permission_error"
    with gateway.http(gateway.admin_key) as http:
        assert http.get("/metrics").status_code == 200
        assert http.get("/admin/keys").status_code == 200
