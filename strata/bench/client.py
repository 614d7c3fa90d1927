"""One streamed request against an OpenAI-compatible endpoint, measured from the client's side.

`send_request` never raises for anything the server or the network does: an HTTP error status,
a timeout, a refused connection, a broken or truncated stream all become `RequestRecord.error`
(`"401"`, `"timeout"`, `"connect"`, ...). Times are taken when the bytes arrive, before any
parsing, on `time.perf_counter`'s clock.
"""

from __future__ import annotations

import asyncio
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from strata.bench.records import RequestRecord
from strata.bench.sse import SseDecoder
from strata.bench.workload import RequestSpec
from strata.errors import BenchTargetError, ConfigError

DETAIL_CHARS = 300  # how much of an error body a record keeps


class Endpoint(ABC):
    """One OpenAI API: where it lives, how a prompt goes in, where streamed text comes out."""

    name: str
    path: str

    @abstractmethod
    def prompt_fields(self, spec: RequestSpec) -> dict[str, Any]: ...

    @abstractmethod
    def text(self, chunk: dict[str, Any]) -> str:
        """The generated text one stream chunk carries ("" for role, finish or usage chunks)."""


class ChatEndpoint(Endpoint):
    """`/chat/completions`; the shared prefix is the system message."""

    name = "chat"
    path = "/chat/completions"

    def prompt_fields(self, spec: RequestSpec) -> dict[str, Any]:
        messages = [{"role": "system", "content": spec.prefix}] if spec.prefix else []
        return {"messages": [*messages, {"role": "user", "content": spec.prompt}]}

    def text(self, chunk: dict[str, Any]) -> str:
        choices = chunk.get("choices") or [{}]
        return (choices[0].get("delta") or {}).get("content") or ""


class CompletionsEndpoint(Endpoint):
    """`/completions`; the shared prefix opens the prompt text."""

    name = "completions"
    path = "/completions"

    def prompt_fields(self, spec: RequestSpec) -> dict[str, Any]:
        return {"prompt": f"{spec.prefix} {spec.prompt}" if spec.prefix else spec.prompt}

    def text(self, chunk: dict[str, Any]) -> str:
        choices = chunk.get("choices") or [{}]
        return choices[0].get("text") or ""


ENDPOINTS: dict[str, Endpoint] = {e.name: e for e in (ChatEndpoint(), CompletionsEndpoint())}


@dataclass(frozen=True)
class Target:
    """The server under test.

    `ignore_eos` sends `ignore_eos: true` and `min_tokens` = `max_tokens` (vLLM's and strata's
    extensions) so each answer has exactly the planned length; turn it off for servers that
    reject unknown fields. `model` None means: the first id `/models` lists.
    """

    base_url: str  # e.g. http://127.0.0.1:8400/v1
    api_key: str | None = field(default=None, repr=False)
    model: str | None = None
    endpoint: Endpoint = ENDPOINTS["chat"]
    ignore_eos: bool = True
    timeout_s: float = 300.0  # per request, from send to the last byte

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"--url {self.base_url!r}: needs http:// or https://")
        if not self.timeout_s > 0:
            raise ConfigError("--timeout must be > 0 seconds")

    def describe(self) -> dict[str, Any]:
        """Everything about the target except the key."""
        return {
            "url": self.base_url,
            "model": self.model,
            "endpoint": self.endpoint.name,
            "ignore_eos": self.ignore_eos,
            "timeout_s": self.timeout_s,
        }


def http_client(target: Target, max_connections: int) -> httpx.AsyncClient:
    """One pool for the whole run, sized so no request waits for a connection."""
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    timeout = httpx.Timeout(target.timeout_s, connect=min(10.0, target.timeout_s), pool=None)
    return httpx.AsyncClient(
        base_url=target.base_url.rstrip("/"), headers=headers, limits=limits, timeout=timeout
    )


async def with_model(http: httpx.AsyncClient, target: Target) -> Target:
    """`target` with its model named: as given, else the first one `/models` lists."""
    if target.model is not None:
        return target
    try:
        response = await http.get("/models")
    except httpx.HTTPError as exc:
        raise BenchTargetError(f"{target.base_url}/models: {exc!r}") from None
    model = _first_model(response)
    if model is None:
        reason = _detail(response.text) if response.status_code != 200 else "no model listed"
        raise BenchTargetError(f"{target.base_url}/models: {response.status_code} {reason}")
    return replace(target, model=model)


def _first_model(response: httpx.Response) -> str | None:
    try:
        return str(response.json()["data"][0]["id"]) if response.status_code == 200 else None
    except (ValueError, LookupError, TypeError):
        return None


def request_body(target: Target, spec: RequestSpec) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": target.model,
        **target.endpoint.prompt_fields(spec),
        "max_tokens": spec.output_tokens,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if target.ignore_eos:
        body |= {"ignore_eos": True, "min_tokens": spec.output_tokens}
    return body


class RequestFailed(Exception):
    """Ends one request early; `kind` becomes `RequestRecord.error`."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


async def send_request(http: httpx.AsyncClient, target: Target, spec: RequestSpec) -> RequestRecord:
    record = RequestRecord(sent=time.perf_counter())
    try:
        async with asyncio.timeout(target.timeout_s):
            await _stream(http, target, spec, record)
    except RequestFailed as exc:
        _fail(record, exc.kind, exc.detail)
    except (TimeoutError, httpx.TimeoutException) as exc:
        _fail(record, "timeout", repr(exc))
    except httpx.ConnectError as exc:
        _fail(record, "connect", repr(exc))
    except httpx.HTTPError as exc:  # read errors, protocol errors, undecodable bodies
        _fail(record, "transport", repr(exc))
    return record


async def _stream(
    http: httpx.AsyncClient, target: Target, spec: RequestSpec, record: RequestRecord
) -> None:
    reader = StreamReader(record, target.endpoint)
    body = request_body(target, spec)
    async with http.stream("POST", target.endpoint.path, json=body) as response:
        record.request_id = response.headers.get("x-request-id")
        if response.status_code != 200:
            raise RequestFailed(str(response.status_code), _detail(await response.aread()))
        async for chunk in response.aiter_bytes():
            reader.feed(chunk, time.perf_counter())
    reader.close(time.perf_counter())


class StreamReader:
    """Fills a `RequestRecord` from one response's SSE bytes as they arrive.

    TTFT is the first chunk with generated text; every such chunk adds a `token_times` entry
    (one chunk may carry several tokens, so counts come from `usage`, or, when the server sends
    none, from the chunks). Raises `RequestFailed` on an error event, a chunk that is not JSON,
    or a stream that ends without `[DONE]`.
    """

    def __init__(self, record: RequestRecord, endpoint: Endpoint) -> None:
        self.record = record
        self.endpoint = endpoint
        self._decoder = SseDecoder()
        self._usage = False

    def feed(self, chunk: bytes, now: float) -> None:
        for data in self._decoder.feed(chunk):
            self._event(data, now)

    def close(self, now: float) -> None:
        for data in self._decoder.close():
            self._event(data, now)
        if self.record.finished is None:
            raise RequestFailed("incomplete", "the stream ended without [DONE]")
        if not self._usage:
            self.record.output_tokens = len(self.record.token_times)

    def _event(self, data: str, now: float) -> None:
        if data == "[DONE]":
            self.record.finished = now
            return
        text, usage = self._interpret(data)
        if text:
            if self.record.first_token is None:
                self.record.first_token = now
            self.record.token_times.append(now)
        if usage is not None:
            self._usage = True
            self.record.prompt_tokens, self.record.output_tokens = usage

    def _interpret(self, data: str) -> tuple[str, tuple[int, int] | None]:
        """The text and the (prompt, completion) token counts one event carries."""
        chunk = _json(data)
        if chunk.get("error"):
            raise RequestFailed("stream_error", _detail(data))
        try:
            return self.endpoint.text(chunk), _usage(chunk.get("usage"))
        except (AttributeError, LookupError, TypeError, ValueError):
            raise RequestFailed(
                "bad_response", f"unexpected chunk: {data[:DETAIL_CHARS]!r}"
            ) from None


def _usage(usage: dict[str, Any] | None) -> tuple[int, int] | None:
    if not usage:
        return None
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)


def _json(data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError:
        raise RequestFailed("bad_response", f"not JSON: {data[:DETAIL_CHARS]!r}") from None
    if not isinstance(chunk, dict):
        raise RequestFailed("bad_response", f"not a JSON object: {data[:DETAIL_CHARS]!r}")
    return chunk


def _detail(body: bytes | str) -> str:
    """The error message of an OpenAI-shaped error body, else the start of the body."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        message = json.loads(text)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = text
    return str(message)[:DETAIL_CHARS]


def _fail(record: RequestRecord, kind: str, detail: str) -> None:
    record.error = kind
    record.error_detail = detail[:DETAIL_CHARS]
    record.finished = None
