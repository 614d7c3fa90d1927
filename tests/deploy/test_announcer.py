"""Keeping a replica announced in a real Redis: heartbeats past the TTL, withdrawal, and a Redis
that goes away."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest

from strata.deploy.announcer import Announcer
from strata.gateway.upstream.registry import Registry, RegistryError, ReplicaRecord
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

MODEL = "tiny"


@pytest.fixture
async def registry(redis_url: str) -> AsyncIterator[Registry]:
    registry = Registry.from_url(redis_url)
    yield registry
    await registry.aclose()


async def test_the_heartbeat_keeps_the_entry_past_its_ttl(
    registry: Registry, redis_url: str
) -> None:
    record = ReplicaRecord("r2", "http://127.0.0.1:1/v1", (MODEL,))
    announcer = Announcer(Registry.from_url(redis_url), "pool", record, heartbeat_s=0.1)
    await announcer.start()
    assert await registry.replicas("pool") == [record]
    await asyncio.sleep(4 * announcer.ttl_s)  # the time that passing is the point
    assert await registry.replicas("pool") == [record]
    await announcer.aclose()
    assert await registry.replicas("pool") == []


async def test_a_redis_outage_is_logged_not_raised_and_starting_without_it_fails(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    record = ReplicaRecord("r3", "http://127.0.0.1:1/v1", (MODEL,))
    announcer = Announcer(Registry.from_url(own_redis_server.url), "pool", record, 0.05)
    await announcer.start()
    own_redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="strata.deploy.announcer"):
        await eventually(lambda: "heartbeat failed" in caplog.text)
        await announcer.aclose()  # the withdraw fails too: logged, the entry expires alone
    assert "the entry expires within" in caplog.text
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nowhere = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    stranded = Announcer(Registry.from_url(nowhere), "pool", record, 1.0)
    with pytest.raises(RegistryError, match="cannot announce r3 in pool"):
        await stranded.start()
    await stranded.registry.aclose()
