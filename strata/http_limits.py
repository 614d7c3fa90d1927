"""Request-size limits at the HTTP edge, answered in the OpenAI error shape (413).

A declared `Content-Length` over the limit is refused before the body is read; a chunked body
is counted as it arrives and refused once it passes the limit.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.http_errors import error_response

CODE = "payload_too_large"


class BodySizeLimitMiddleware:
    """Refuses request bodies larger than `max_bytes` with a 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.max_bytes:
            response = error_response(413, self._message(), "invalid_request_error", code=CODE)
            await response(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # An HTTPException passes through FastAPI's body parsing to the 413 handler.
                raise HTTPException(413, detail=self._message())
            return message

        return counted

    def _message(self) -> str:
        return f"The request body is larger than {self.max_bytes} bytes."


def _declared_length(scope: Scope) -> int:
    value = Headers(scope=scope).get("content-length", "")
    return int(value) if value.isdigit() else 0
