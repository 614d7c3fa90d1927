"""Dashboard logins: a browser cannot send `Authorization: Bearer` when it navigates, so an admin
key is exchanged once (`POST /admin/dashboard/session`) for a session cookie.

The cookie holds a random 256-bit token and nothing else; this process keeps only the token's
SHA-256 next to the admin `Principal` it stands for and its expiry, so the cookie is worthless
to another process and a memory dump holds no usable token. Sessions end on expiry, on logout,
when the key is revoked or rotated through this gateway, and when the process stops (the
dashboard's history is per process too). The cookie is `HttpOnly` (page scripts cannot read it)
and `SameSite=Strict` (no other site can make the browser send it).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from strata.gateway.auth import key_expired
from strata.gateway.principal import Principal

COOKIE = "strata_dashboard"
MAX_SESSIONS = 10_000  # the oldest is dropped beyond this: logins cannot exhaust memory


@dataclass(frozen=True)
class Session:
    principal: Principal
    expires_at: float  # the sessions' clock (time.monotonic by default)


class DashboardSessions:
    """Session tokens by their hash; `ttl_s` is how long a login lasts."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, principal: Principal) -> str:
        """A new session for an admin; the returned token goes into the cookie, once."""
        assert principal.role == "admin", "dashboard sessions are for admin keys only"
        token = secrets.token_urlsafe(32)
        self._sessions[_digest(token)] = Session(principal, self._clock() + self.ttl_s)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return token

    def principal(self, token: str | None) -> Principal | None:
        """The admin behind a live session; None for no, unknown or expired tokens."""
        if not token:
            return None
        digest = _digest(token)
        session = self._sessions.get(digest)
        if session is None:
            return None
        if session.expires_at <= self._clock() or key_expired(session.principal):
            del self._sessions[digest]
            return None
        return session.principal

    def close(self, token: str | None) -> None:
        if token:
            self._sessions.pop(_digest(token), None)

    def close_for_key(self, key_id: str) -> None:
        """End every session opened with this key (after it is revoked or rotated)."""
        for digest in [d for d, s in self._sessions.items() if s.principal.key_id == key_id]:
            del self._sessions[digest]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
