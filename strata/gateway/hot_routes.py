"""The generation routes served straight from ASGI, ahead of the framework's middleware stack.

`POST /v1/chat/completions` and `POST /v1/completions` are nearly all of a gateway's traffic,
and each framework layer (routing, exception and body-limit middleware, dependency machinery)
costs microseconds per request that the benchmark's p99 feels. `HotRoutes` answers those two
routes itself and hands everything else (admin, models, health, metrics, lifespan) to the
FastAPI app. Errors still become responses in the one place, `strata.http_errors`, and the body
limit is the same `gateway.max_body_bytes`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from strata.errors import PayloadTooLargeError, StrataError
from strata.http_errors import internal_error_response, strata_error_response

logger = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    """ASGI: `routes` by exact (method, path) here; anything else goes to `app`."""

    def __init__(self, app: ASGIApp, routes: Mapping[tuple[str, str], Handler]) -> None:
        self.app = app
        self.routes = dict(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = None
        if scope["type"] == "http":
            handler = self.routes.get((scope["method"], scope["path"]))
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except StrataError as exc:
            response = strata_error_response(exc)
        except Exception:
            logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
            response = internal_error_response()
        await response(scope, receive, send)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused with 413 past `max_bytes` (declared or counted as it comes)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(max_bytes: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is larger than {max_bytes} bytes.", code="payload_too_large"
    )
