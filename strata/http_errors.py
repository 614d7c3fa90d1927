"""The one place where errors become HTTP responses in the OpenAI error shape.

Every error body is `{"error": {"message", "type", "code", "param"}}`. `StrataError`s map by
their own `status_code` / `error_type` (plus `Retry-After` for 429 and 503); FastAPI's request
validation errors, malformed JSON, unknown routes and wrong methods map to 400/404/405; anything
else is logged with its traceback and answered with a 500 whose message reveals nothing inside.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.errors import (
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    RequestError,
    StrataError,
    UpstreamError,
)

logger = logging.getLogger(__name__)

INTERNAL_ERROR_MESSAGE = "The server had an error while processing your request."
_MAX_REPORTED_ERRORS = 5

# OpenAI error `type` for each status an HTTP exception may carry.
_TYPE_BY_STATUS = {
    cls.status_code: cls.error_type
    for cls in (
        InvalidRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        PayloadTooLargeError,
        RateLimitError,
        OverloadedError,
    )
}


def error_body(
    message: str, error_type: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """The OpenAI error object; also sent as an SSE event when a stream fails midway."""
    return {"error": {"message": message, "type": error_type, "code": code, "param": param}}


def error_response(
    status: int,
    message: str,
    error_type: str,
    *,
    code: str | None = None,
    param: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = error_body(message, error_type, code=code, param=param)
    return JSONResponse(body, status_code=status, headers=headers)


def internal_error_response() -> JSONResponse:
    return error_response(500, INTERNAL_ERROR_MESSAGE, "server_error", code="internal_error")


def _is_public(exc: StrataError) -> bool:
    """Caller errors and upstream failures explain themselves; anything else stays inside."""
    return isinstance(exc, RequestError | UpstreamError)


def strata_error_body(exc: StrataError) -> dict[str, Any]:
    """The body for `exc`; errors that are not a caller's doing keep their message inside."""
    if not _is_public(exc):
        return error_body(INTERNAL_ERROR_MESSAGE, "server_error", code="internal_error")
    return error_body(exc.message, exc.error_type, code=exc.code, param=exc.param)


def strata_error_response(exc: StrataError) -> JSONResponse:
    if not _is_public(exc):
        logger.error("internal strata error: %s", exc.message, exc_info=exc)
        return JSONResponse(strata_error_body(exc), status_code=500)
    headers = None
    if isinstance(exc, RequestError) and exc.retry_after_s is not None:
        headers = {"Retry-After": str(max(0, math.ceil(exc.retry_after_s)))}
    return JSONResponse(strata_error_body(exc), status_code=exc.status_code, headers=headers)


def describe_validation_errors(errors: Sequence[Any]) -> tuple[str, str | None, str]:
    """(message, param, code) for pydantic/FastAPI errors, naming each field by dotted path."""
    first = errors[0]
    special = _describe_body_error(first)
    if special is not None:
        return special
    parts = [_describe_one(err) for err in errors[:_MAX_REPORTED_ERRORS]]
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - _MAX_REPORTED_ERRORS} more errors")
    code = "missing_required_parameter" if first["type"] == "missing" else "invalid_value"
    return "; ".join(parts), field_path(first["loc"]) or None, code


def field_path(loc: Sequence[Any]) -> str:
    """`("body", "messages", 0, "content")` -> `messages.0.content`."""
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    return ".".join(str(p) for p in parts)


def _describe_one(err: dict[str, Any]) -> str:
    path = field_path(err["loc"])
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):
        message = str(err["ctx"]["error"])
    elif err["type"] == "missing":
        message = "is required"
    else:
        message = err["msg"]
    return f"{path}: {message}" if path else message


def _describe_body_error(err: dict[str, Any]) -> tuple[str, None, str] | None:
    """Errors about the body as a whole: not JSON, absent, or not an object."""
    if err["type"] == "json_invalid":
        detail = err.get("ctx", {}).get("error", "")
        position = err["loc"][-1]
        message = f"Request body is not valid JSON: {detail} (at character {position})."
        return message, None, "invalid_json"
    if tuple(err["loc"]) != ("body",):
        return None
    if err["type"] == "missing":
        return "Request body is required: send a JSON object.", None, "invalid_json"
    message = "Request body must be a JSON object sent with Content-Type: application/json."
    return message, None, "invalid_json"


async def _on_strata_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StrataError)
    return strata_error_response(exc)


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, param, code = describe_validation_errors(exc.errors())
    return error_response(400, message, "invalid_request_error", code=code, param=param)


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404:
        message = f"No such route: {request.method} {request.url.path}."
        return error_response(404, message, "not_found_error", code="not_found")
    if status == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
        return error_response(
            405, message, "invalid_request_error", code="method_not_allowed", headers=exc.headers
        )
    default_type = "invalid_request_error" if status < 500 else "server_error"
    error_type = _TYPE_BY_STATUS.get(status, default_type)
    code = "payload_too_large" if status == 413 else None
    return error_response(status, str(exc.detail), error_type, code=code, headers=exc.headers)


class LastResortMiddleware:
    """Turns an exception nothing else handled into a logged, uninformative 500.

    Unlike an `Exception` handler (which Starlette re-raises after answering) this logs once.
    If the response had already started there is nothing to send, so the error propagates.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            if started:
                raise
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            await internal_error_response()(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Map every error `app` can raise to the OpenAI error shape (call before serving)."""
    app.add_exception_handler(StrataError, _on_strata_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_middleware(LastResortMiddleware)
