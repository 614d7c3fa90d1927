from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from strata.errors import AuthenticationError
from strata.gateway.auth import Authenticator
from strata.gateway.principal import Principal


class _Verifier:
    """Counts store lookups; knows one key."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        self.calls = 0

    async def verify(self, presented_key: str) -> Principal:
        self.calls += 1
        if presented_key != "sk-good":
            raise AuthenticationError("bad key", code="invalid_api_key")
        return self.principal


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


ALICE = Principal(key_id="k1", tenant="acme", user="alice", role="user")


async def test_verified_keys_are_cached_for_the_ttl() -> None:
    verifier, clock = _Verifier(ALICE), _Clock()
    auth = Authenticator(verifier, ttl_s=2.0, clock=clock)
    assert await auth.principal("Bearer sk-good") == ALICE
    assert await auth.principal("bearer sk-good") == ALICE
    assert verifier.calls == 1
    clock.now += 2.5
    await auth.principal("Bearer sk-good")
    assert verifier.calls == 2


async def test_forget_evicts_at_once() -> None:
    verifier = _Verifier(ALICE)
    auth = Authenticator(verifier, ttl_s=60.0)
    await auth.principal("Bearer sk-good")
    auth.forget("k1")
    await auth.principal("Bearer sk-good")
    assert verifier.calls == 2


async def test_an_expired_cached_key_is_verified_again() -> None:
    soon = Principal("k2", "acme", "bob", "user", expires_at=datetime.now(UTC) - timedelta(1))
    verifier = _Verifier(soon)
    auth = Authenticator(verifier, ttl_s=60.0)
    await auth.principal("Bearer sk-good")
    await auth.principal("Bearer sk-good")
    assert verifier.calls == 2


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer sk-bad"])
async def test_missing_or_bad_credentials_are_401(header: str | None) -> None:
    auth = Authenticator(_Verifier(ALICE), ttl_s=60.0)
    with pytest.raises(AuthenticationError):
        await auth.principal(header)


async def test_a_refused_key_is_refused_from_memory_for_a_second() -> None:
    verifier, clock = _Verifier(ALICE), _Clock()
    auth = Authenticator(verifier, ttl_s=60.0, clock=clock)
    for _ in range(3):
        with pytest.raises(AuthenticationError):
            await auth.principal("Bearer sk-bad")
    assert verifier.calls == 1
    clock.now += 1.5
    with pytest.raises(AuthenticationError):
        await auth.principal("Bearer sk-bad")
    assert verifier.calls == 2
