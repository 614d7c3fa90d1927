"""Dynamic membership: replicas announced in a real Redis become the router's members (over real
HTTP to mock upstreams), leave when withdrawn, and a whole gateway routes to them."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from strata.config import Settings
from strata.errors import OverloadedError
from strata.gateway.upstream import Router, UpstreamCall
from strata.gateway.upstream.discovery import Discovery
from strata.gateway.upstream.registry import Registry, ReplicaRecord
from tests.gateway.conftest import gateway_settings
from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

MODEL = "mock-model"
TOKEN = "sk-replica-token"
TOKEN_ENV = "STRATA_TEST_REPLICA_TOKEN"


@pytest.fixture(scope="module")
def replicas() -> Iterator[tuple[MockUpstream, MockUpstream, MockUpstream]]:
    with (
        MockUpstream("a", api_key=TOKEN) as a,
        MockUpstream("b", api_key=TOKEN) as b,
        MockUpstream("c", api_key=TOKEN) as c,
    ):
        yield a, b, c


@pytest.fixture(autouse=True)
def fresh(replicas: tuple[MockUpstream, ...], monkeypatch: pytest.MonkeyPatch) -> None:
    for mock in replicas:
        mock.reset()
    monkeypatch.setenv(TOKEN_ENV, TOKEN)


def settings(redis_url: str, **pool: Any) -> Settings:
    template = {"name": "pool", "discover": "engines", "models": [MODEL], "tier": "reserved",
                "api_key_env": TOKEN_ENV, **pool}  # fmt: skip
    return Settings(
        gateway={"engine": False},
        upstreams=[template],
        redis_url=redis_url,
        routing={"backoff_ms": 1, "health_interval_s": 60, "discovery_interval_s": 0.05},
    )


@pytest.fixture
async def registry(redis_url: str) -> AsyncIterator[Registry]:
    registry = Registry.from_url(redis_url)
    yield registry
    await registry.aclose()


@pytest.fixture
async def routed(redis_url: str) -> AsyncIterator[tuple[Router, Discovery]]:
    """A router over the pool "engines" and its discovery (not polling: tests refresh)."""
    configured = settings(redis_url)
    router = Router.from_settings(configured)
    discovery = Discovery.from_settings(router, configured)
    assert discovery is not None
    yield router, discovery
    await discovery.aclose()
    await router.aclose()


async def announce(registry: Registry, *mocks: MockUpstream, models: tuple[str, ...] = (MODEL,)):
    for mock in mocks:
        await registry.announce("engines", ReplicaRecord(mock.name, mock.url, models), ttl_s=30)


def chat() -> UpstreamCall:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    deadline = asyncio.get_running_loop().time() + 10
    return UpstreamCall("/chat/completions", body, False, "req-1", deadline)


async def answered_by(router: Router) -> str:
    reply = await router.dispatch(MODEL, chat())
    await reply.aclose()
    assert reply.status == 200
    return reply.upstream


async def test_a_discovered_model_is_known_before_any_replica_and_answers_503(
    routed: tuple[Router, Discovery],
) -> None:
    router, discovery = routed
    assert await discovery.refresh() is False  # nothing announced: nothing changed
    assert router.models() == [MODEL]
    with pytest.raises(OverloadedError) as caught:
        await router.dispatch(MODEL, chat())
    assert caught.value.code == "upstream_unavailable"
    assert "none registered" in caught.value.message


async def test_announced_replicas_are_routed_to_with_the_templates_settings(
    routed: tuple[Router, Discovery], registry: Registry, replicas: tuple[MockUpstream, ...]
) -> None:
    router, discovery = routed
    a, b, _ = replicas
    await announce(registry, a, b)
    assert await discovery.refresh() is True
    assert [m.name for m in router.members] == ["pool/a", "pool/b"]
    assert {m.tier for m in router.members} == {"reserved"}
    assert await answered_by(router) in ("pool/a", "pool/b")  # with the template's token
    assert a.count() + b.count() == 1
    seen = [r.headers.get("authorization") for mock in (a, b) for r in mock.requests]
    assert seen and set(seen) == {f"Bearer {TOKEN}"}


async def test_a_withdrawn_replica_leaves_and_gets_no_more_requests(
    routed: tuple[Router, Discovery], registry: Registry, replicas: tuple[MockUpstream, ...]
) -> None:
    router, discovery = routed
    a, b, _ = replicas
    await announce(registry, a, b)
    await discovery.refresh()
    staying = router.members[0]
    await registry.withdraw("engines", "b")
    assert await discovery.refresh() is True
    assert await discovery.refresh() is False
    assert router.members == (staying,)  # the same member: breaker and counts kept
    for _ in range(4):
        assert await answered_by(router) == "pool/a"
    assert b.count() == 0


async def test_a_dead_replica_not_yet_expired_is_failed_over(
    routed: tuple[Router, Discovery], registry: Registry, replicas: tuple[MockUpstream, ...]
) -> None:
    router, discovery = routed
    with socket.socket() as sock:  # a port nobody listens on: a replica killed with -9
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    await registry.announce("engines", ReplicaRecord("0dead", dead, (MODEL,)), ttl_s=30)
    await announce(registry, replicas[0])
    await discovery.refresh()
    assert [m.name for m in router.members] == ["pool/0dead", "pool/a"]
    assert await answered_by(router) == "pool/a"


async def test_a_replica_not_serving_the_declared_model_is_not_routed_to(
    routed: tuple[Router, Discovery], registry: Registry, replicas: tuple[MockUpstream, ...]
) -> None:
    router, discovery = routed
    await announce(registry, replicas[0], models=("another-model",))
    await discovery.refresh()
    assert router.members == ()


async def test_new_members_are_health_checked_at_once(
    redis_url: str, registry: Registry, replicas: tuple[MockUpstream, ...]
) -> None:
    configured = settings(redis_url)
    router = Router.from_settings(configured)
    discovery = Discovery.from_settings(router, configured)
    assert discovery is not None
    _, _, c = replicas
    c.health_status = 503
    await router.start()
    try:
        await announce(registry, c)
        await discovery.refresh()
        await eventually(lambda: router.health_snapshot()[0].healthy is False)
    finally:
        await discovery.aclose()
        await router.aclose()


async def test_a_member_that_left_is_no_longer_health_checked(
    redis_url: str, registry: Registry, replicas: tuple[MockUpstream, ...]
) -> None:
    configured = settings(redis_url)
    configured.routing.health_interval_s = 0.02
    router = Router.from_settings(configured)
    discovery = Discovery.from_settings(router, configured)
    assert discovery is not None
    a, b, _ = replicas
    await router.start()
    try:
        await announce(registry, a, b)
        await discovery.refresh()
        await eventually(lambda: b.count("/v1/models") >= 2)  # b is probed
        await registry.withdraw("engines", "b")
        await discovery.refresh()
        probes_of_a, probes_of_b = a.count("/v1/models"), b.count("/v1/models")
        await eventually(lambda: a.count("/v1/models") >= probes_of_a + 3)  # a still is
        assert b.count("/v1/models") <= probes_of_b + 1  # b not (one may have been under way)
    finally:
        await discovery.aclose()
        await router.aclose()


async def test_an_unreachable_registry_keeps_the_members(
    own_redis_server: RedisServer, replicas: tuple[MockUpstream, ...]
) -> None:
    configured = settings(own_redis_server.url)
    router = Router.from_settings(configured)
    discovery = Discovery.from_settings(router, configured)
    assert discovery is not None
    registry = Registry.from_url(own_redis_server.url)
    try:
        await announce(registry, replicas[0])
        await discovery.refresh()
        own_redis_server.stop()
        assert await discovery.refresh() is False
        assert [m.name for m in router.members] == ["pool/a"]
        assert await answered_by(router) == "pool/a"
    finally:
        await registry.aclose()
        await discovery.aclose()
        await router.aclose()


def test_a_gateway_follows_the_registry(
    pg_dsn: str, tmp_path: Path, redis_url: str, replicas: tuple[MockUpstream, ...]
) -> None:
    """`strata serve`'s runtime with a `discover` upstream: replicas announced before it starts
    answer its first request; one announced later is routed to within the poll interval."""
    a, b, _ = replicas
    asyncio.run(_announce_one(redis_url, a))
    template = settings(redis_url).upstreams[0].model_dump()
    configured = gateway_settings(
        pg_dsn, tmp_path, template, redis_url=redis_url,
        routing={"discovery_interval_s": 0.05, "health_interval_s": 60},
    )  # fmt: skip
    with LiveGateway(configured) as gw:
        key = gw.create_key()
        with gw.http(key) as http:
            assert _chat(http).status_code == 200
            assert a.count() == 1
            asyncio.run(_announce_one(redis_url, b))
            asyncio.run(_withdraw_one(redis_url, "a"))
            b.wait_until(lambda: _chat(http).status_code == 200 and b.count() > 0)
        ready = gw.http().get("/readyz").json()
        assert [u["name"] for u in ready["upstreams"]] == ["pool/b"]


def _chat(http: httpx.Client) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    reply = http.post("/v1/chat/completions", content=json.dumps(body))
    assert reply.status_code == 200, reply.text
    return reply


async def _announce_one(redis_url: str, mock: MockUpstream) -> None:
    registry = Registry.from_url(redis_url)
    try:
        await announce(registry, mock)
    finally:
        await registry.aclose()


async def _withdraw_one(redis_url: str, name: str) -> None:
    registry = Registry.from_url(redis_url)
    try:
        await registry.withdraw("engines", name)
    finally:
        await registry.aclose()
