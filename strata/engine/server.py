"""The engine alone behind an OpenAI-compatible HTTP API (`strata engine serve`).

Routes: `POST /v1/chat/completions`, `POST /v1/completions` (both streaming or not),
`GET /v1/models`, `GET /metrics`, `POST /v1/kv/events` (for prefix-aware routers) — all
behind `Authorization: Bearer <token>` — and `GET /healthz` without auth. A client that
disconnects aborts its request in the engine. This module knows HTTP, tokens-in/tokens-out and
metrics; it knows nothing of tenants or keys (the gateway puts those in front of it).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from uuid import uuid4

import anyio
from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response, StreamingResponse

from strata.engine.engine import Engine
from strata.engine.formatting import ChatFormat, ResponseFormat, TextFormat
from strata.engine.kv_routes import kv_events_router
from strata.engine.outputs import Delta
from strata.engine.prompt import chat_prompt_ids, text_prompt_ids
from strata.engine.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    ModelCard,
    ModelList,
    sse_event,
)
from strata.errors import (
    ConfigError,
    InvalidRequestError,
    NotFoundError,
    StrataError,
)
from strata.fairness import tag_from_headers
from strata.http_auth import BearerTokenMiddleware, check_bearer
from strata.http_disconnect import unless_disconnected
from strata.http_errors import (
    INTERNAL_ERROR_MESSAGE,
    error_body,
    install_error_handlers,
    strata_error_body,
)
from strata.http_limits import BodySizeLimitMiddleware
from strata.secret_files import read_or_create_secret
from strata.telemetry.engine_metrics import CONTENT_TYPE, EngineMetrics, NullRecorder, Recorder

if TYPE_CHECKING:
    from strata.config import Settings
    from strata.telemetry.otel import EngineTelemetry

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024**2
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away"; nobody receives it
_T = TypeVar("_T")


def build_engine_app(
    engine: Engine,
    token: str,
    *,
    manage_engine: bool = True,
    metrics: EngineMetrics | None = None,
    telemetry: EngineTelemetry | None = None,
    instrumentation: bool = True,
) -> FastAPI:
    """The engine's HTTP app. With `manage_engine` the app starts and stops the engine loop;
    `metrics` lets an embedding process (the gateway) scrape what this app records;
    `telemetry` reports each request to OpenTelemetry (None: off). Without `instrumentation`
    no request is recorded at all, neither in `metrics` nor to `telemetry`; the engine-wide
    gauges and counters are still read at scrape time."""
    if not token:
        raise ConfigError("The engine server needs a non-empty bearer token.")
    app = FastAPI(
        title="strata engine",
        lifespan=_engine_lifespan(engine) if manage_engine else None,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        strict_content_type=False,  # a body without Content-Type is read as JSON
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(BearerTokenMiddleware, token=token, public=("/healthz",))  # runs first
    app.add_api_route("/healthz", _health_route(engine), methods=["GET"])
    metrics = metrics or EngineMetrics(engine.stats)
    routes = _OpenAIRoutes(engine, metrics, telemetry, recording=instrumentation)
    auth = [Depends(bearer_auth(token))]
    app.include_router(routes.router(), dependencies=auth)
    app.include_router(kv_events_router(engine.core.kv_events), dependencies=auth)
    return app


def bearer_auth(token: str) -> Callable[[Request], None]:
    """A dependency accepting only `Authorization: Bearer <token>`, compared in constant time
    (`BearerTokenMiddleware` checks first, before the body is read; this keeps the routes
    closed wherever they are mounted)."""

    def check(request: Request) -> None:
        check_bearer(request.headers.get("authorization"), token)

    return check


def load_or_create_engine_token(settings: Settings) -> str:
    """`engine_server.token` (or `STRATA_ENGINE_SERVER__TOKEN`), else the token file, else a
    new random token written to `settings.engine_token_file` readable by the owner only."""
    if settings.engine_server.token is not None:
        configured = settings.engine_server.token.get_secret_value().strip()
        if not configured:
            raise ConfigError("engine_server.token is empty; set a token or remove the key.")
        return configured
    return read_or_create_secret(settings.engine_token_file)


def _engine_lifespan(engine: Engine) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    return lifespan


def _health_route(engine: Engine) -> Callable[[], Awaitable[JSONResponse]]:
    async def healthz() -> JSONResponse:
        if engine.is_alive:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "engine loop not running"}, status_code=503)

    return healthz


class _OpenAIRoutes:
    """The authenticated routes; each handler is: check model → tokenize → generate → format."""

    def __init__(
        self,
        engine: Engine,
        metrics: EngineMetrics,
        telemetry: EngineTelemetry | None,
        recording: bool = True,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.telemetry = telemetry
        self.recording = recording  # False: no request is recorded (NullRecorder)

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_api_route("/v1/chat/completions", self.chat, methods=["POST"])
        router.add_api_route("/v1/completions", self.completions, methods=["POST"])
        router.add_api_route("/v1/models", self.models, methods=["GET"])
        router.add_api_route("/metrics", self.prometheus, methods=["GET"])
        return router

    async def chat(self, body: ChatCompletionRequest, request: Request) -> Response:
        recorder = self._recorder(request, "chat", body.model)
        self._check_model(body.model)
        messages = body.template_messages()
        ids = await run_in_threadpool(chat_prompt_ids, self.engine.tokenizer, messages)
        fmt = ChatFormat(f"chatcmpl-{uuid4().hex}", self.engine.model_name, body.return_token_ids)
        return await self._generate(_Call(request, fmt, recorder, "messages"), body, ids)

    async def completions(self, body: CompletionRequest, request: Request) -> Response:
        recorder = self._recorder(request, "text_completion", body.model)
        self._check_model(body.model)
        ids = await run_in_threadpool(text_prompt_ids, self.engine.tokenizer, body.prompt)
        fmt = TextFormat(f"cmpl-{uuid4().hex}", self.engine.model_name, body.return_token_ids)
        return await self._generate(_Call(request, fmt, recorder, "prompt"), body, ids)

    def _recorder(self, request: Request, operation: str, model: str | None) -> Recorder:
        """`operation` names the request for OpenTelemetry (the GenAI conventions' name)."""
        if not self.recording:
            return NullRecorder()
        if self.telemetry is None:
            return self.metrics.recorder()
        report = self.telemetry.request(request.headers, operation, model)
        return self.metrics.recorder(on_finish=report)

    async def models(self) -> ModelList:
        card = ModelCard(id=self.engine.model_name, max_model_len=self.engine.max_model_len)
        return ModelList(data=[card])

    async def prometheus(self) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE)

    def _check_model(self, name: str | None) -> None:
        if name is not None and name != self.engine.model_name:
            raise NotFoundError(
                f"The model '{name}' does not exist; this server serves "
                f"'{self.engine.model_name}'.",
                code="model_not_found",
                param="model",
            )

    async def _generate(
        self, call: _Call, body: ChatCompletionRequest | CompletionRequest, prompt_ids: list[int]
    ) -> Response:
        params = body.to_sampling_params(
            room=self.engine.max_model_len - len(prompt_ids),
            defaults=self.engine.sampling_defaults,
        )
        # Whose fair share this draws on: the gateway's header, else the OpenAI `user` field.
        fair = tag_from_headers(call.request.headers, fallback_key=body.user)
        deltas = self.engine.generate(
            prompt_ids,
            params,
            request_id=call.fmt.request_id,
            fairness_key=fair.key,
            weight=fair.weight,
            priority=body.priority,
        )
        if body.stream:
            return await _stream(call, deltas, body.include_usage)
        collected = await unless_disconnected(call.request, _collect(call, deltas))
        if collected is None:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        return JSONResponse(call.fmt.response(collected).model_dump(mode="json"))


@dataclass(frozen=True)
class _Call:
    """One HTTP generation call: where it came from and how its answer is shaped."""

    request: Request
    fmt: ResponseFormat
    recorder: Recorder
    prompt_param: str  # the field holding the prompt: "messages" or "prompt"


async def _stream(call: _Call, deltas: AsyncIterator[Delta], include_usage: bool) -> Response:
    # Wait for the first delta before answering, so a rejected request (400, 503) gets
    # a real HTTP status instead of an error event inside a 200 stream.
    first = await unless_disconnected(call.request, _first(call, deltas))
    if first is None:
        await _close(deltas)
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return StreamingResponse(
        _events(call, first, deltas, include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _first(call: _Call, deltas: AsyncIterator[Delta]) -> Delta:
    """The first delta; submission happens here, so this is where rejections surface."""
    try:
        first = await anext(deltas)
    except InvalidRequestError as exc:
        if exc.param == "prompt":
            exc.param = call.prompt_param  # name the field the caller actually sent
        raise
    call.recorder.observe(first)
    return first


async def _collect(call: _Call, deltas: AsyncIterator[Delta]) -> list[Delta]:
    collected = [await _first(call, deltas)]
    async for delta in deltas:
        call.recorder.observe(delta)
        collected.append(delta)
    return collected


async def _events(
    call: _Call, first: Delta, deltas: AsyncIterator[Delta], include_usage: bool
) -> AsyncIterator[str]:
    """SSE events: role, content chunks, optional usage, `[DONE]`. A failure midway becomes
    an OpenAI error event (the status line is long gone); a disconnect aborts the request."""
    try:
        async for event in _chunks(call, first, deltas, include_usage):
            yield event
    except StrataError as exc:
        yield sse_event(strata_error_body(exc))
    except Exception:
        logger.exception("stream %s failed", call.fmt.request_id)
        yield sse_event(error_body(INTERNAL_ERROR_MESSAGE, "server_error", code="internal_error"))
    finally:
        with anyio.CancelScope(shield=True):
            await _close(deltas)
    yield call.fmt.done()


async def _chunks(
    call: _Call, first: Delta, deltas: AsyncIterator[Delta], include_usage: bool
) -> AsyncIterator[str]:
    fmt, last = call.fmt, first
    for opening in fmt.opening():
        yield opening
    if (chunk := fmt.chunk(first)) is not None:
        yield chunk
    async for last in deltas:
        call.recorder.observe(last)
        if (chunk := fmt.chunk(last)) is not None:
            yield chunk
    if include_usage:
        yield fmt.usage(last)


async def _close(deltas: AsyncIterator[Delta]) -> None:
    """Close the engine's stream; closing an unfinished one aborts the request."""
    if isinstance(deltas, AsyncGenerator):
        await deltas.aclose()
