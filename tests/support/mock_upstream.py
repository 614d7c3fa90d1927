"""A configurable OpenAI-compatible upstream for tests: real HTTP, uvicorn on a free loopback port,
served from a background thread.

    with MockUpstream("a", models=("m",), api_key="sk-a") as up:
        up.url                        # "http://127.0.0.1:<port>/v1": an upstream's `url`
        up.fail_next(2, status=503)   # the next 2 generation requests answer 503
        ...                           # send requests
        up.count()                    # generation requests received so far
        up.requests[-1].headers       # what the last request carried (lower-case names)

Routes: `POST /v1/chat/completions` and `/v1/completions` (streamed or not, `stream_options.
include_usage` honoured), `POST /v1/embeddings`, `GET /v1/models` (the health probe; answers
`health_status`). With `api_key` set every route needs `Authorization: Bearer <api_key>` (401).
A `model` not in `models` gets a 404.

Behaviour knobs, plain attributes a test may change at any time (read per request):
    text               the answer; streamed one word per event
    stall_s            wait this long before the answer's head (a disconnect ends the wait)
    event_delay_s      wait this long between streamed events
    die_after_events   streamed: drop the connection after this many events (no [DONE])
    line_end           SSE line ending, e.g. "\\r\\n"
    comments           send an SSE comment line before each event
    health_status      status of GET /v1/models
and `fail_next(n, status, body=..., headers=...)` to queue failures.

`reset()` restores all of that (a module-scoped mock can serve many tests).

Observations: `requests` (every request, in order, as `Seen`), `count(path)`, `aborted` (answers
whose client went away before their end), `completed`, `in_flight`, `max_in_flight`,
`connections()` (distinct client connections seen), and `wait_until(predicate)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.types import Message, Receive, Scope, Send

GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions")


@dataclass(frozen=True)
class Seen:
    """One request as the mock received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None
    client_port: int


@dataclass
class _Failure:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class _Die(Exception):
    """Raised inside the app to make uvicorn drop the connection mid-answer."""


class _QuietDeaths(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Die))


logging.getLogger("uvicorn.error").addFilter(_QuietDeaths())


class MockUpstream:
    def __init__(
        self, name: str = "mock", *, models: tuple[str, ...] = ("mock-model",), api_key: str = ""
    ) -> None:
        self.name = name
        self.models = models
        self.api_key = api_key
        self.reset()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        config = uvicorn.Config(
            self._app, log_level="warning", lifespan="off", http="httptools", interface="asgi3"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    # -- test-side API ---------------------------------------------------------------------

    def reset(self) -> None:
        """Default behaviour, no queued failures, observations cleared (for reuse across tests)."""
        self.text = f"Hello from {self.name} upstream"
        self.stall_s = 0.0
        self.event_delay_s = 0.0
        self.die_after_events: int | None = None
        self.line_end = "\n"
        self.comments = False
        self.health_status = 200
        self.requests: list[Seen] = []
        self.aborted = 0
        self.completed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._failures: deque[_Failure] = deque()

    def __enter__(self) -> MockUpstream:
        self._thread.start()
        self.wait_until(lambda: self._server.started, timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def fail_next(
        self,
        n: int = 1,
        status: int = 503,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next `n` generation requests answer `status` with `body` (an OpenAI error)."""
        body = body or {"error": {"message": f"mock failure {status}", "type": "mock"}}
        for _ in range(n):
            self._failures.append(_Failure(status, body, dict(headers or {})))

    def count(self, path: str | None = None) -> int:
        """Requests to `path`, or generation requests when None."""
        paths = GENERATION_PATHS if path is None else (path,)
        return sum(1 for seen in self.requests if seen.path in paths)

    def connections(self) -> int:
        return len({seen.client_port for seen in self.requests})

    @staticmethod
    def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "condition not met in time"
            time.sleep(0.005)

    # -- the ASGI app ----------------------------------------------------------------------

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = await _read_body(receive)
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        parsed = json.loads(body) if body else None
        self.requests.append(
            Seen(scope["method"], scope["path"], headers, parsed, scope["client"][1])
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await _Exchange(self, scope["path"], headers, parsed, receive, send).run()
        finally:
            self.in_flight -= 1


class _Exchange:
    """One request to the mock and how it is answered."""

    def __init__(
        self,
        mock: MockUpstream,
        path: str,
        headers: dict[str, str],
        body: Any,
        receive: Receive,
        send: Send,
    ) -> None:
        self.mock = mock
        self.path = path
        self.headers = headers
        self.body = body if isinstance(body, dict) else {}
        self.send = send
        self.gone = asyncio.Event()
        self._watcher = asyncio.ensure_future(self._watch(receive))

    async def run(self) -> None:
        try:
            await self._answer()
        finally:
            self._watcher.cancel()

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone.set()

    async def _answer(self) -> None:
        mock = self.mock
        if mock.api_key and self.headers.get("authorization") != f"Bearer {mock.api_key}":
            return await self._json(401, _error("bad key", "authentication_error"))
        if self.path == "/v1/models":
            data = [{"id": m, "object": "model", "owned_by": mock.name} for m in mock.models]
            return await self._json(mock.health_status, {"object": "list", "data": data})
        if self.path not in (*GENERATION_PATHS, "/v1/embeddings"):
            return await self._json(404, _error(f"no route {self.path}", "not_found_error"))
        if self.body.get("model") not in mock.models:
            return await self._json(404, _error("no such model", "not_found_error"))
        if mock._failures:
            failure = mock._failures.popleft()
            return await self._json(failure.status, failure.body, failure.headers)
        if not await self._pause(mock.stall_s):
            return
        if self.path == "/v1/embeddings":
            return await self._json(200, _embedding(self.body["model"]))
        if self.body.get("stream"):
            return await self._stream()
        await self._json(200, self._completion())

    async def _pause(self, seconds: float) -> bool:
        """Wait `seconds`; False (and counted as aborted) if the client left meanwhile."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), seconds)
        if self.gone.is_set():
            self.mock.aborted += 1
            return False
        return True

    async def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(payload).encode()
        extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await self.send({"type": "http.response.body", "body": raw})
        self.mock.completed += 1

    async def _stream(self) -> None:
        await self.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        for sent, event in enumerate(self._events()):
            if sent == self.mock.die_after_events:
                raise _Die
            if not await self._pause(self.mock.event_delay_s if sent else 0.0):
                return
            await self.send({"type": "http.response.body", "body": event, "more_body": True})
        await self.send({"type": "http.response.body", "body": b""})
        self.mock.completed += 1

    def _events(self) -> list[bytes]:
        end = self.mock.line_end
        comment = f": keep-alive{end}" if self.mock.comments else ""
        payloads = [json.dumps(chunk) for chunk in self._chunks()] + ["[DONE]"]
        return [f"{comment}data: {p}{end}{end}".encode() for p in payloads]

    def _chunks(self) -> list[dict[str, Any]]:
        chat = self.path == "/v1/chat/completions"
        words = self.mock.text.split(" ")
        pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
        chunks = [self._chunk(chat, piece, None) for piece in pieces]
        if chat:
            chunks.insert(0, self._chunk(chat, "", None, role=True))
        chunks.append(self._chunk(chat, "", "stop"))
        if (self.body.get("stream_options") or {}).get("include_usage"):
            chunks.append({**self._chunk(chat, "", None), "choices": [], "usage": self._usage()})
        return chunks

    def _chunk(
        self, chat: bool, text: str, finish: str | None, *, role: bool = False
    ) -> dict[str, Any]:
        model = self.body["model"]
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "model": model,
                    "choices": [choice]}  # fmt: skip
        choice = {"index": 0, "text": text, "finish_reason": finish}
        return {"id": "cmpl-mock", "object": "text_completion", "model": model, "choices": [choice]}

    def _completion(self) -> dict[str, Any]:
        model, text = self.body["model"], self.mock.text
        if self.path == "/v1/chat/completions":
            message = {"role": "assistant", "content": text}
            choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
            kind = "chat.completion"
        else:
            choice, kind = {"index": 0, "text": text, "finish_reason": "stop"}, "text_completion"
        return {"id": "mock", "object": kind, "model": model, "choices": [choice],
                "usage": self._usage()}  # fmt: skip

    def _usage(self) -> dict[str, int]:
        completion = len(self.mock.text.split(" "))
        return {"prompt_tokens": 5, "completion_tokens": completion, "total_tokens": 5 + completion}


def _embedding(model: str) -> dict[str, Any]:
    item = {"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}
    usage = {"prompt_tokens": 1, "total_tokens": 1}
    return {"object": "list", "data": [item], "model": model, "usage": usage}


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": None, "param": None}}


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message: Message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)
