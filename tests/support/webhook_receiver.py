"""A webhook receiver for tests: a real HTTP server on a free loopback port, in a thread, that
records every POST it gets.

    with WebhookReceiver() as hook:
        hook.url                       # "http://127.0.0.1:<port>/hook"
        hook.fail_next(2, status=500)  # the next 2 POSTs answer 500
        hook.stall_s = 5.0             # answer each POST after 5 s (a hanging receiver)
        ...
        hook.wait_until(lambda: len(hook.posts) == 1, timeout=10)
        hook.posts[0].json, hook.posts[0].headers   # header names lower-case
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Post:
    """One POST as the receiver got it (including the ones it answered with an error)."""

    path: str
    headers: dict[str, str]
    json: Any
    status: int  # what the receiver answered
    at: float  # time.monotonic() when it arrived


class WebhookReceiver:
    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.stall_s = 0.0
        self._failures: list[int] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._lock:
            self._failures += [status] * n

    def delivered(self) -> list[Any]:
        """The bodies of the POSTs answered 200, in arrival order."""
        with self._lock:
            return [p.json for p in self.posts if p.status == 200]

    @staticmethod
    def wait_until(predicate: Callable[[], object], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, f"condition not met within {timeout} s"
            time.sleep(0.01)

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        if self.stall_s:
            time.sleep(self.stall_s)
        with self._lock:
            status = self._failures.pop(0) if self._failures else 200
            self.posts.append(Post(path, headers, json.loads(body), status, time.monotonic()))
        return status


def _handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = receiver._answer(self.path, headers, body)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None  # quiet

    return Handler
