"""The one parser of `Authorization: Bearer <credential>` headers (engine server and gateway),
and the engine server's token check, done before a request's body is read."""

from __future__ import annotations

import hmac
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from strata.errors import AuthenticationError
from strata.http_errors import strata_error_response


def bearer_credential(header: str | None) -> str | None:
    """The credential of a `Bearer` authorization header; None when absent or another scheme."""
    if not header:
        return None
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip() or None


def check_bearer(header: str | None, token: str) -> None:
    """Raise `AuthenticationError` unless `header` is `Bearer <token>` (constant-time)."""
    given = bearer_credential(header) or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise AuthenticationError(
            "Missing or invalid bearer token: send 'Authorization: Bearer <engine token>'.",
            code="invalid_api_key",
        )


class BearerTokenMiddleware:
    """Refuses every HTTP request without `Authorization: Bearer <token>` (401), except to the
    `public` paths, before anything reads its body: a caller without the token cannot make the
    server parse a body or learn anything from how it is refused."""

    def __init__(self, app: ASGIApp, token: str, public: Collection[str] = ()) -> None:
        self.app = app
        self.token = token
        self.public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in self.public:
            try:
                check_bearer(Headers(scope=scope).get("authorization"), self.token)
            except AuthenticationError as exc:
                await strata_error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)
