"""The registry in a real Redis: announce, renew, withdraw, expire, and an unreachable Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from strata.gateway.upstream.registry import PREFIX, Registry, RegistryError, ReplicaRecord
from tests.support.redis_server import RedisServer

A = ReplicaRecord("a1", "http://127.0.0.1:9001/v1", ("m",))
B = ReplicaRecord("b2", "http://127.0.0.1:9002/v1", ("m", "n"))


@pytest.fixture
async def registry(redis_url: str) -> AsyncIterator[Registry]:
    registry = Registry.from_url(redis_url)
    yield registry
    await registry.aclose()


async def test_announced_replicas_are_listed_by_name_until_withdrawn(registry: Registry) -> None:
    await registry.announce("pool", B, ttl_s=30)
    await registry.announce("pool", A, ttl_s=30)
    await registry.announce("other", A, ttl_s=30)
    assert await registry.replicas("pool") == [A, B]
    await registry.withdraw("pool", "a1")
    assert await registry.replicas("pool") == [B]
    assert await registry.replicas("other") == [A]  # pools are apart
    await registry.withdraw("pool", "a1")  # twice: a no-op


async def test_announcing_again_renews_the_entry_and_updates_it(registry: Registry) -> None:
    await registry.announce("pool", A, ttl_s=30)
    moved = ReplicaRecord("a1", "http://127.0.0.1:9009/v1", ("m",))
    await registry.announce("pool", moved, ttl_s=30)
    assert await registry.replicas("pool") == [moved]


async def test_an_entry_not_renewed_expires_and_its_name_is_pruned(
    registry: Registry, redis_server: RedisServer
) -> None:
    await registry.announce("pool", A, ttl_s=0.2)
    await registry.announce("pool", B, ttl_s=30)
    listed = await _until(lambda found: found == [B], registry, "pool")
    assert listed == [B]
    with redis_server.client() as client:
        assert client.smembers(f"{PREFIX}:pool") == {b"b2"}


async def test_an_entry_that_is_not_a_record_is_skipped(
    registry: Registry, redis_server: RedisServer
) -> None:
    await registry.announce("pool", A, ttl_s=30)
    with redis_server.client() as client:
        client.sadd(f"{PREFIX}:pool", "junk")
        client.set(f"{PREFIX}:pool:junk", b"{not json")
    assert await registry.replicas("pool") == [A]


async def test_an_unreachable_redis_raises_a_registry_error(
    own_redis_server: RedisServer,
) -> None:
    registry = Registry.from_url(own_redis_server.url)
    own_redis_server.stop()
    try:
        with pytest.raises(RegistryError, match="cannot read pool pool"):
            await registry.replicas("pool")
        with pytest.raises(RegistryError, match="cannot announce a1 in pool"):
            await registry.announce("pool", A, ttl_s=1)
    finally:
        await registry.aclose()


async def _until(
    done: Callable[[list[ReplicaRecord]], bool], registry: Registry, pool: str
) -> list[ReplicaRecord]:
    """Poll the pool until `done(replicas)` holds (Redis expires keys on its own clock), at
    most 5 s."""
    deadline = asyncio.get_running_loop().time() + 5.0
    while True:
        found = await registry.replicas(pool)
        if done(found) or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)
