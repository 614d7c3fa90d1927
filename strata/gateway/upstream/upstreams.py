"""Model endpoints the gateway sends requests to, behind one interface.

`HttpUpstream` (kind "openai") speaks HTTP to any OpenAI-compatible server through the pooled
`HttpClient`; `EngineUpstream` (kind "engine") calls the built-in engine's ASGI app in this
process through `AsgiClient`. Both return the same `UpstreamReply`, whatever its status: an
upstream neither retries nor judges statuses (the router does), and raises only a
`TransportError` when no complete answer head came back.

Upstreams know nothing of aliases, tenants, breakers or health bookkeeping.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson
from starlette.types import ASGIApp

from strata.config import Tier, UpstreamSettings
from strata.errors import ConfigError
from strata.fairness import FairnessTag
from strata.gateway.upstream.asgi import AsgiClient
from strata.gateway.upstream.errors import ConnectionClosed
from strata.gateway.upstream.http_client import HttpClient, header_line
from strata.gateway.upstream.response import Response
from strata.gateway.upstream.sse import SseEvents

KEPT_HEADERS = (b"content-type", b"retry-after")  # what an upstream's answer passes on


@dataclass(frozen=True)
class UpstreamCall:
    """One generation request as the gateway hands it to the router."""

    path: str  # after /v1: "/chat/completions", "/completions", "/embeddings"
    body: Mapping[str, Any]  # the JSON body to send (model, max_tokens... already rewritten)
    stream: bool
    request_id: str  # sent upstream as x-request-id
    deadline: float  # loop.time() by which the whole call, stream included, must end
    require_dpa: bool = False  # only upstreams with a data-processing agreement may take it
    trace_headers: tuple[tuple[str, str], ...] = ()  # W3C trace context, when traced
    fairness: FairnessTag | None = None  # whose fair share it draws on (the tenant's)
    reserved_tokens: int = 0  # prompt estimate + max_tokens: what fair admission charges

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """Headers each attempt adds: trace context, and the fairness key hashed (opaque)."""
        fair = () if self.fairness is None else self.fairness.wire_headers()
        return (*self.trace_headers, *fair)

    @cached_property
    def payload(self) -> bytes:
        """The body serialized once, whatever the number of attempts."""
        return orjson.dumps(self.body)


class UpstreamReply:
    """An upstream's answer.

    Not streamed, or any status but 200: `body` holds the bytes as the upstream sent them and
    `events` is None. Streamed 200: `events` yields each SSE data payload (`b"[DONE]"`
    included) and `body` is None; from the router, a failure midway raises `UpstreamError`.
    Always `aclose()` a reply: it returns the connection to the pool or, mid-stream, closes it,
    which aborts the generation upstream.
    """

    __slots__ = ("_close", "body", "events", "headers", "status", "tier", "upstream")

    def __init__(
        self,
        upstream: str,
        tier: Tier,
        status: int,
        headers: Mapping[str, str],
        *,
        body: bytes | None = None,
        events: AsyncIterator[bytes] | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.upstream = upstream
        self.tier = tier
        self.status = status
        self.headers = headers  # lower-case names, only `KEPT_HEADERS`
        self.body = body
        self.events = events
        self._close = close

    @property
    def retry_after_s(self) -> float | None:
        """The upstream's Retry-After in seconds, when it sent one as a number."""
        try:
            return float(self.headers["retry-after"])
        except (KeyError, ValueError):
            return None

    def with_events(self, events: AsyncIterator[bytes]) -> UpstreamReply:
        """The same reply streaming `events` instead (closing still closes the upstream's)."""
        return UpstreamReply(
            self.upstream, self.tier, self.status, self.headers, events=events, close=self._close
        )

    async def aclose(self) -> None:
        close, self._close = self._close, None
        if close is not None:
            await close()

    def on_close(self, done: Callable[[], None]) -> None:
        """Call `done` once when this reply is closed (after the upstream's own close)."""
        inner = self._close

        async def close() -> None:
            try:
                if inner is not None:
                    await inner()
            finally:
                done()

        self._close = close


class Upstream(ABC):
    """One model endpoint; connections open on first use, `aclose()` at shutdown."""

    def __init__(self, settings: UpstreamSettings, models: tuple[str, ...]) -> None:
        self.settings = settings
        self.name = settings.name
        self.kind = settings.kind
        self.tier: Tier = settings.tier
        self.dpa = settings.dpa
        self.supports = None if settings.supports is None else frozenset(settings.supports)
        self.models = models

    async def send(self, call: UpstreamCall, deadline: float) -> UpstreamReply:
        """Send `call`; return once the answer's head is in (and, unless streaming a 200, its
        body). Raises `TransportError`. `deadline` (loop.time()) bounds the whole exchange."""
        response = await self._post(call, deadline)
        if call.stream and response.status == 200:
            events = SseEvents(response)
            return self._reply(response, events=events, close=events.aclose)
        try:
            body = await response.read()
        finally:
            await response.aclose()
        return self._reply(response, body=body)

    async def check_health(self, deadline: float) -> None:
        """Raise `TransportError` unless the upstream answers its health probe with a 200."""
        response = await self._probe(deadline)
        try:
            await response.read()
        finally:
            await response.aclose()
        if response.status != 200:
            raise ConnectionClosed(f"health check answered HTTP {response.status}")

    @abstractmethod
    async def aclose(self) -> None: ...

    @abstractmethod
    async def _post(self, call: UpstreamCall, deadline: float) -> Response: ...

    @abstractmethod
    async def _probe(self, deadline: float) -> Response: ...

    def _reply(
        self,
        response: Response,
        *,
        body: bytes | None = None,
        events: AsyncIterator[bytes] | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> UpstreamReply:
        headers = {
            name.decode(): value.decode("latin-1")
            for key, value in response.headers
            if (name := key.lower()) in KEPT_HEADERS
        }
        return UpstreamReply(
            self.name, self.tier, response.status, headers, body=body, events=events, close=close
        )


class HttpUpstream(Upstream):
    """Any OpenAI-compatible server, by base URL up to `/v1`; health is `GET {url}/models`,
    on a connection of its own so that a pool saturated by requests does not look down."""

    def __init__(self, settings: UpstreamSettings) -> None:
        super().__init__(settings, tuple(settings.models))
        if not settings.url:
            raise ConfigError(f"upstreams[{settings.name}].url is required for kind 'openai'.")
        headers = [("content-type", "application/json"), ("accept", "application/json")]
        credential = read_credential(settings)
        if credential is not None:
            headers.append(("authorization", f"Bearer {credential}"))
        try:
            self.client = self._client(settings, headers, settings.max_connections)
            self.prober = self._client(settings, headers, 1)
        except ValueError as exc:
            raise ConfigError(f"upstreams[{settings.name}].url: {exc}") from exc

    @staticmethod
    def _client(
        settings: UpstreamSettings, headers: list[tuple[str, str]], size: int
    ) -> HttpClient:
        assert settings.url is not None
        return HttpClient(
            settings.url,
            headers=headers,
            max_connections=size,
            connect_timeout_s=settings.connect_timeout_s,
        )

    async def aclose(self) -> None:
        await self.client.aclose()
        await self.prober.aclose()

    async def _post(self, call: UpstreamCall, deadline: float) -> Response:
        extra = header_line("x-request-id", call.request_id)
        for name, value in call.headers:
            extra += header_line(name, value)
        return await self.client.request(
            "POST", call.path, body=call.payload, headers=extra, deadline=deadline
        )

    async def _probe(self, deadline: float) -> Response:
        return await self.prober.request("GET", "/models", deadline=deadline)


@dataclass(frozen=True)
class EngineBinding:
    """The built-in engine an "engine" upstream calls: the app from
    `strata.engine.server.build_engine_app`, its bearer token and its served model name."""

    app: ASGIApp
    token: str
    model_name: str


class EngineUpstream(Upstream):
    """The built-in engine's ASGI app, called in-process; serves `binding.model_name` unless
    the settings list models. Health is its `GET /healthz`."""

    def __init__(self, settings: UpstreamSettings, binding: EngineBinding) -> None:
        super().__init__(settings, tuple(settings.models) or (binding.model_name,))
        headers = [
            ("authorization", f"Bearer {binding.token}"),
            ("content-type", "application/json"),
        ]
        self.client = AsgiClient(binding.app, headers=headers)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _post(self, call: UpstreamCall, deadline: float) -> Response:
        extra: tuple[tuple[bytes, bytes], ...] = ((b"x-request-id", call.request_id.encode()),)
        if call.headers:
            extra += tuple((name.encode(), value.encode()) for name, value in call.headers)
        return await self.client.request(
            "POST", "/v1" + call.path, body=call.payload, headers=extra, deadline=deadline
        )

    async def _probe(self, deadline: float) -> Response:
        return await self.client.request("GET", "/healthz", deadline=deadline)


def build_upstream(settings: UpstreamSettings, engine: EngineBinding | None = None) -> Upstream:
    """The upstream `settings` describe; kind "engine" needs the running engine's `binding`."""
    if settings.kind == "openai":
        return HttpUpstream(settings)
    if engine is None:
        raise ConfigError(
            f"upstreams[{settings.name}] has kind 'engine' but the built-in engine is not "
            "running here (gateway.engine is false)."
        )
    return EngineUpstream(settings, engine)


def read_credential(settings: UpstreamSettings) -> str | None:
    """The bearer token from `api_key_env` or `api_key_file`; `ConfigError` naming the setting
    when it is set but names nothing usable. None when neither is set."""
    where = f"upstreams[{settings.name}]"
    if settings.api_key_env and settings.api_key_file:
        raise ConfigError(f"{where}: set api_key_env or api_key_file, not both.")
    if settings.api_key_env:
        value = os.environ.get(settings.api_key_env, "").strip()
        if not value:
            raise ConfigError(
                f"{where}.api_key_env names {settings.api_key_env}, which is not set or empty."
            )
        return value
    if settings.api_key_file:
        return _read_key_file(where, settings.api_key_file)
    return None


def _read_key_file(where: str, path: Path) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{where}.api_key_file: cannot read {path}: {exc.strerror}") from exc
    if not value:
        raise ConfigError(f"{where}.api_key_file: {path} is empty.")
    return value
