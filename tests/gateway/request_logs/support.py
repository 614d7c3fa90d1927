"""Helpers for the request-log tests against a live gateway."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream

OPENAI_KEY = "sk-proj-" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2"
EMAIL = "jane.doe@example.com"
ANSWER_EMAIL = "bob.smith@example.org"


@dataclass
class Logged:
    gw: LiveGateway
    upstream: MockUpstream
    dsn: str
    acme: str  # a user key of the logged tenant
    beta: str  # a user key of a tenant that is not logged

    def logs(self, **params: Any) -> list[dict[str, Any]]:
        reply = self.gw.admin("GET", "/logs", params=params)
        assert reply.status_code == 200, reply.text
        data: list[dict[str, Any]] = reply.json()["data"]
        return data

    def wait_for_logs(self, count: int, timeout: float = 10, **params: Any) -> list[dict[str, Any]]:
        """The logs matching `params` once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.logs(**params)
            if len(found) >= count or time.monotonic() > deadline:
                assert len(found) == count, found
                return found
            time.sleep(0.02)

    def show(self, request_id: str) -> dict[str, Any]:
        reply = self.gw.admin("GET", f"/logs/{request_id}")
        assert reply.status_code == 200, reply.text
        shown: dict[str, Any] = reply.json()
        return shown

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def chat(self, key: str, content: str = "hello", **kw: Any) -> str:
        """A non-streamed chat through the openai SDK; the x-request-id it was answered with."""
        raw = self.gw.client(key).chat.completions.with_raw_response.create(
            model="mock-model", messages=[{"role": "user", "content": content}], **kw
        )
        raw.parse()
        return raw.headers["x-request-id"]

    def feedback(self, key: str | None, body: Any) -> Any:
        with self.gw.http(key) as http:
            return http.post("/v1/feedback", json=body)
