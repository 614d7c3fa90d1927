"""Authentication: the API key in `Authorization: Bearer ...` becomes a `Principal`.

Verification (hash lookup, revocation, expiry) belongs to the key store; this step adds a short
in-memory cache so the hot path does not query PostgreSQL per request. A cached principal is
trusted for `gateway.key_cache_s`, which bounds how late a revocation made through another
replica takes effect; revocations through this process evict at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from strata.errors import AuthenticationError
from strata.gateway.principal import Principal
from strata.http_auth import bearer_credential

MAX_CACHED_KEYS = 100_000
REFUSED_TTL_S = 1.0


class KeyVerifier(Protocol):
    async def verify(self, presented_key: str) -> Principal:
        """The principal behind `presented_key`; raises `AuthenticationError` otherwise."""
        ...


class Authenticator:
    """Bearer header -> verified `Principal`, with a bounded TTL cache in front of the store."""

    def __init__(
        self,
        verifier: KeyVerifier,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._verifier = verifier
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        # Keys just refused, briefly: a client retrying a bad key (or a flood of them) costs
        # one store lookup per key a second, not one per request. A refused key never turns
        # valid later (new keys have new secrets), so this cannot lock out a good one.
        self._refused: OrderedDict[str, tuple[AuthenticationError, float]] = OrderedDict()

    async def principal(self, authorization: str | None) -> Principal:
        key = bearer_credential(authorization)
        if key is None:
            raise AuthenticationError(
                "Missing API key: send 'Authorization: Bearer <your strata key>'.",
                code="missing_api_key",
            )
        cached = self._fresh(key)
        if cached is not None:
            return cached
        refused = self._refused.get(key)
        if refused is not None and refused[1] > self._clock():
            raise AuthenticationError(refused[0].message, code=refused[0].code)
        try:
            principal = await self._verifier.verify(key)
        except AuthenticationError as exc:
            self._refuse(key, exc)
            raise
        self._remember(key, principal)
        return principal

    def forget(self, key_id: str) -> None:
        """Evict every cached key with this id (after a revoke or rotate in this process)."""
        for key in [k for k, (p, _) in self._cache.items() if p.key_id == key_id]:
            del self._cache[key]

    def _fresh(self, key: str) -> Principal | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        principal, until = entry
        if until <= self._clock() or key_expired(principal):
            del self._cache[key]
            return None
        return principal

    def _refuse(self, key: str, error: AuthenticationError) -> None:
        self._refused[key] = (error, self._clock() + REFUSED_TTL_S)
        if len(self._refused) > MAX_CACHED_KEYS:
            self._refused.popitem(last=False)

    def _remember(self, key: str, principal: Principal) -> None:
        if self._ttl_s <= 0:
            return
        self._cache[key] = (principal, self._clock() + self._ttl_s)
        if len(self._cache) > MAX_CACHED_KEYS:
            self._cache.popitem(last=False)


def key_expired(principal: Principal) -> bool:
    return principal.expires_at is not None and principal.expires_at <= datetime.now(UTC)
