"""An engine replica's server without Ray: `strata engine serve`'s app on a free port, announced
in a real Redis, found by a router's discovery, drained."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from strata.config import Settings
from strata.deploy.announcer import Announcer
from strata.deploy.engine_server import EngineServer
from strata.deploy.plan import ENGINE_TOKEN_ENV, ClusterPlan
from strata.gateway.upstream import Router, UpstreamCall
from strata.gateway.upstream.discovery import Discovery
from strata.gateway.upstream.registry import Registry, ReplicaRecord
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

TOKEN = "engine-replica-token"
MODEL = "tiny"


def replica_settings(folder: Path, data_dir: Path, redis_url: str) -> Settings:
    return Settings.model_validate(
        {
            "data_dir": str(data_dir),
            "store": {"dsn": "host=/nowhere"},
            "redis_url": redis_url,
            "engine": {"model": str(folder), "served_model_name": MODEL, "threads": 1,
                       "max_model_len": 256, "kv_cache_memory": "8MiB"},
            "engine_server": {"token": TOKEN},
            "routing": {"health_interval_s": 60, "discovery_interval_s": 0.05},
        }
    )  # fmt: skip


@pytest.fixture(scope="module")
def server(
    tiny_llama_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineServer]:
    data_dir = tmp_path_factory.mktemp("replica")
    engine = EngineServer(replica_settings(tiny_llama_folder, data_dir, "redis://x"), "127.0.0.1")
    engine.start()
    yield engine
    engine.stop()


def client(server: EngineServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.url, api_key=TOKEN, max_retries=0)


async def test_it_serves_the_engine_app_behind_its_token(server: EngineServer) -> None:
    assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/v1")
    assert server.alive and server.model_name == MODEL
    async with httpx.AsyncClient() as http:
        assert (await http.get(server.url.removesuffix("/v1") + "/healthz")).status_code == 200
        assert (await http.get(f"{server.url}/models")).status_code == 401
    models = await client(server).models.list()
    assert [m.id for m in models.data] == [MODEL]


async def test_a_drain_waits_for_the_requests_in_flight(server: EngineServer) -> None:
    assert await server.drain(timeout_s=0.0) is True  # idle
    running = asyncio.create_task(
        client(server).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "go"}], max_tokens=120,
            extra_body={"ignore_eos": True},
        )
    )  # fmt: skip
    await eventually(lambda: server.stats().num_running + server.stats().num_waiting > 0)
    assert await server.drain(timeout_s=0.01) is False
    assert await server.drain(timeout_s=60) is True
    assert running.done() and running.result().usage.completion_tokens == 120


@pytest.fixture
async def registry(redis_url: str) -> AsyncIterator[Registry]:
    registry = Registry.from_url(redis_url)
    yield registry
    await registry.aclose()


async def test_an_announced_replica_is_found_and_answers_through_a_router(
    server: EngineServer, registry: Registry, redis_url: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, tiny_llama_folder: Path,
) -> None:  # fmt: skip
    record = ReplicaRecord("r1", server.url, (server.model_name,))
    announcer = Announcer(Registry.from_url(redis_url), "engine", record, heartbeat_s=5)
    await announcer.start()
    plan = ClusterPlan.from_settings(replica_settings(tiny_llama_folder, tmp_path, redis_url))
    gateway = plan.gateway_settings([MODEL])
    monkeypatch.setenv(ENGINE_TOKEN_ENV, TOKEN)
    router = Router.from_settings(gateway)
    discovery = Discovery.from_settings(router, gateway)
    assert discovery is not None
    try:
        await discovery.start()
        assert [m.name for m in router.members] == ["engine/r1"]
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
        deadline = asyncio.get_running_loop().time() + 60
        reply = await router.dispatch(MODEL, UpstreamCall("/chat/completions", body, False,
                                                          "req-1", deadline))  # fmt: skip
        assert reply.status == 200 and reply.body is not None
        assert json.loads(reply.body)["usage"]["completion_tokens"] == 3
        await reply.aclose()
        await announcer.aclose()  # withdrawn: the router lets it go at the next read
        assert await discovery.refresh() is True and router.members == ()
    finally:
        await discovery.aclose()
        await router.aclose()
