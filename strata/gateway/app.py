"""The gateway's HTTP surface: the OpenAI-compatible routes, health, readiness and /metrics.

Routes: `POST /v1/chat/completions`, `POST /v1/completions` (streaming or not),
`POST /v1/embeddings` (404 until the pipeline's embedding model lands), `GET /v1/models` (the
models this key may use), `GET /healthz` (alive), `GET /readyz` (store and upstreams),
`GET /metrics` (admin keys only), the `/admin/...` API, `GET /dashboard` (admins only) and
`POST /v1/feedback` with the request-log routes (`strata.gateway.request_logs.routes`).
Handlers are thin: the work happens in `strata.gateway.pipeline`; errors map to OpenAI error
bodies in `strata.http_errors`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from strata.gateway.admin_api import require_admin
from strata.gateway.body import Endpoint
from strata.gateway.dashboard import dashboard_router
from strata.gateway.hot_routes import HotRoutes
from strata.gateway.principal import Principal
from strata.gateway.request_logs.routes import request_log_router
from strata.http_errors import install_error_handlers
from strata.http_limits import BodySizeLimitMiddleware

if TYPE_CHECKING:
    from strata.gateway.runtime import GatewayRuntime

Handler = Callable[[Request], Awaitable[Response]]


def build_gateway_app(runtime: GatewayRuntime) -> ASGIApp:
    """The public app over a started-on-lifespan `runtime`: the generation routes answered
    directly (`HotRoutes`), the rest by a FastAPI app that also runs the lifespan."""
    app = FastAPI(
        title="strata gateway",
        lifespan=runtime.lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # no public schema of the admin API
        strict_content_type=False,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimitMiddleware, max_bytes=int(runtime.settings.gateway.max_body_bytes)
    )
    routes = _Routes(runtime)
    app.add_route("/v1/embeddings", routes.embeddings, methods=["POST"])
    app.add_route("/v1/retrieve", routes.retrieve, methods=["POST"])
    app.add_route("/v1/models", routes.models, methods=["GET"])
    app.add_route("/healthz", routes.healthz, methods=["GET"])
    app.add_route("/readyz", routes.readyz, methods=["GET"])
    app.add_route("/metrics", routes.metrics, methods=["GET"])
    app.include_router(runtime.admin_router(), prefix="/admin")
    app.include_router(dashboard_router(runtime))
    app.include_router(request_log_router(runtime))
    hot = {
        ("POST", "/v1/chat/completions"): routes.generation("chat"),
        ("POST", "/v1/completions"): routes.generation("completions"),
    }
    return HotRoutes(app, hot)


class _Routes:
    def __init__(self, runtime: GatewayRuntime) -> None:
        self.runtime = runtime

    def generation(self, endpoint: Endpoint) -> Handler:
        async def handle(request: Request) -> Response:
            return await self.runtime.gateway.generate(endpoint, request)

        return handle

    async def embeddings(self, request: Request) -> Response:
        return await self.runtime.retrieval.embeddings(request)

    async def retrieve(self, request: Request) -> Response:
        return await self.runtime.retrieval.retrieve(request)

    async def models(self, request: Request) -> Response:
        principal = await self.runtime.gateway.authenticate(request)
        created = int(time.time())
        cards = [
            {"id": name, "object": "model", "created": created, "owned_by": "strata"}
            for name in self.runtime.router.models()
            if _may_list(principal, name, self.runtime.router.resolve(name))
        ]
        return JSONResponse({"object": "list", "data": cards})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        report = await self.runtime.readiness()
        return JSONResponse(report, status_code=200 if report["ready"] else 503)

    async def metrics(self, request: Request) -> Response:
        principal = await self.runtime.gateway.authenticate(request)
        require_admin(principal)
        body, content_type = self.runtime.render_metrics()
        return Response(body, media_type=content_type)


def _may_list(principal: Principal, public: str, served: str) -> bool:
    return principal.may_use_model(public) or principal.may_use_model(served)
