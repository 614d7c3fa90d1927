"""`strata deploy ray` on a real local Ray cluster: two engine replicas of the bundled SmolLM2 and
two gateway replicas behind Ray Serve's HTTP proxy, sharing one Redis and one PostgreSQL, all
started by this module, inside a network namespace of its own with only loopback up (Ray
otherwise binds the host's address), on 2 CPUs with fractional CPUs per replica.

- a tenant's budget holds across both gateway replicas (limits in Redis);
- `kill -9` of an engine replica under steady streaming load fails no request that had not
  started streaming (the gateways' router fails it over) and Ray replaces the replica;
- autoscaling on strata's queue depth goes 1 → 2 → 1 replicas under a load step.

The requests go through the real OpenAI SDK to the proxy; the replicas log under the Ray
session's logs/ (in this module's temp dir) when something fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import openai
import pytest

from strata.config import EnginePoolSettings, Settings
from strata.deploy.plan import ENGINE_TOKEN_ENV, ClusterPlan
from strata.gateway.identity import KeyStore
from strata.gateway.principal import Limits
from strata.gateway.upstream import Router, UpstreamCall
from strata.gateway.upstream.discovery import Discovery
from strata.gateway.upstream.policy import RoundRobin
from strata.gateway.upstream.registry import Registry, ReplicaRecord
from strata.store.database import Database, EmbeddedServer
from tests.support.netns import loopback_namespace, unavailable
from tests.support.postgres import fresh_database
from tests.support.redis_server import RedisServer, started_server

pytest.importorskip("ray.serve", reason="Ray is not installed (pip install 'strata[ray]')")
pytestmark = [
    pytest.mark.slow,
    # Ray deprecates metrics_interval_s for environment variables it does not read yet (2.60).
    pytest.mark.filterwarnings("ignore:The `metrics_interval_s` field:DeprecationWarning"),
    pytest.mark.skipif(unavailable() is not None, reason=f"Ray test cluster: {unavailable()}"),
]

from strata.deploy.cluster import Deployed, RayCluster  # noqa: E402  (needs Ray)

POOL = "engine"
MODEL = "smollm2"
TENANT_RPM = 8
FAMILIES, CONVERSATIONS_EACH, TURNS = 6, 2, 2
WORDS = ["refund", "warranty", "kettle", "shipping", "invoice", "account", "order", "delivery",
         "store", "customer", "agent", "ticket", "escalate", "region", "courier",
         "voucher"]  # fmt: skip
T = TypeVar("T")
PROMPT = [{"role": "user", "content": "Count slowly from one to one hundred."}]


@dataclass
class Cluster:
    ray: RayCluster
    plan: ClusterPlan
    deployed: Deployed
    redis: RedisServer
    dsn: str

    @property
    def pool(self) -> EnginePoolSettings:
        return self.plan.pools[0]

    def client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.deployed.url, api_key=key, max_retries=0, timeout=120
        )

    async def key(self, tenant: str, user: str, limits: Limits | None = None) -> str:
        async with Database(self.plan.engine_settings, pool_size=1) as database:
            keys = KeyStore(database.pool)
            if limits is not None:
                await keys.create_tenant(tenant, limits=limits)
            return (await keys.create_key(tenant, user)).key

    async def replicas(self) -> list[ReplicaRecord]:
        registry = Registry.from_url(self.redis.url)
        try:
            return await registry.replicas(POOL)
        finally:
            await registry.aclose()


@pytest.fixture(scope="module")
def namespace() -> Iterator[None]:
    with loopback_namespace(f"strata-ray-{os.getpid()}"):
        yield


@pytest.fixture(scope="module")
def redis(namespace: None) -> Iterator[RedisServer]:
    """Inside the namespace: the replicas reach it on its loopback."""
    directory = Path(tempfile.mkdtemp(prefix="strata-ray-redis-"))
    server = started_server(directory)
    yield server
    server.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def dsn(pg_server: EmbeddedServer) -> Iterator[str]:
    """A database of the session's PostgreSQL (a Unix socket: reachable from the namespace)."""
    with fresh_database(pg_server, "test_ray") as dsn:
        yield dsn


@pytest.fixture(scope="module")
def ray_cluster(namespace: None) -> Iterator[RayCluster]:
    """Ray in this process on 2 CPUs, its session files in a temp dir of its own. Token auth
    off: it would write ~/.ray/auth_token, which later connections elsewhere then trip on."""
    temp_dir = Path(tempfile.mkdtemp(prefix="strata-ray-"))
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = RayCluster.connect(None, "strata-test", num_cpus=2, temp_dir=temp_dir)
    try:
        yield cluster
    finally:
        cluster.shutdown()
        _restore_env("RAY_AUTH_MODE", before)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(
    ray_cluster: RayCluster,
    redis: RedisServer,
    dsn: str,
    smollm2_folder: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Cluster:
    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path_factory.mktemp("ray-data")),
            "store": {"dsn": dsn},
            "redis_url": redis.url,
            "engine": {"model": str(smollm2_folder), "served_model_name": MODEL, "threads": 1,
                       "max_model_len": 512, "kv_cache_memory": "32MiB"},
            "guard": {"enabled": False},
            "routing": {"discovery_interval_s": 0.25, "health_interval_s": 0.5,
                        "backoff_ms": 20, "retries": 3, "kv_poll_interval_s": 0.1},
            "deploy": {"ray": {
                "gateway_replicas": 2, "gateway_cpus": 0.25, "heartbeat_s": 0.5,
                "health_check_period_s": 1.0, "drain_timeout_s": 10.0,
                "engines": [{"name": POOL, "min_replicas": 2, "max_replicas": 2,
                             "num_cpus": 0.25}],
            }},
        }
    )  # fmt: skip
    plan = ClusterPlan.from_settings(settings)
    deployed = ray_cluster.deploy(plan, "127.0.0.1", _free_port())
    return Cluster(ray_cluster, plan, deployed, redis, dsn)


# -- the tests ---------------------------------------------------------------------------------


async def test_a_tenant_budget_holds_across_both_gateway_replicas(cluster: Cluster) -> None:
    assert cluster.deployed.models == (MODEL,)
    assert len(await cluster.replicas()) == 2
    ann = await cluster.key("acme", "ann", Limits(rpm=TENANT_RPM))
    bob = await cluster.key("acme", "bob")
    answers = await asyncio.gather(*(_short_chat(cluster, (ann, bob)[i % 2]) for i in range(24)))
    statuses = Counter(status for status, _ in answers)
    assert statuses == {200: TENANT_RPM, 429: 24 - TENANT_RPM}, statuses
    assert len({gateway for _, gateway in answers}) == 2  # both gateway replicas answered


async def test_prefix_aware_routing_beats_round_robin_on_prefix_hits(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gateways' prefix-aware routing against round-robin over the same two engine
    replicas (a router of this process, fed by the same registry): the engines' prefix-cache
    hits on conversations that share long system prompts. Each run has prompts of its own."""
    client = cluster.client(await cluster.key("prefix", "pat"))
    monkeypatch.setenv(ENGINE_TOKEN_ENV, cluster.plan.token)
    round_robin = await _round_robin_router(cluster)
    try:
        rr_rate = await _prefix_hit_rate(lambda chat: _via_router(round_robin, chat), "rr")
        prefix_rate = await _prefix_hit_rate(lambda chat: _via_gateway(client, chat), "prefix")
    finally:
        await round_robin.aclose()
        await client.close()
    assert prefix_rate >= rr_rate + 0.1, (prefix_rate, rr_rate)


async def test_kill_9_of_an_engine_replica_loses_no_request_not_yet_streaming(
    cluster: Cluster,
) -> None:
    load = Load(cluster.client(await cluster.key("load", "kim")), clients=4)
    await _poll(lambda: load.outcomes["ok"] >= 2 and load.streaming >= 2, "streams in flight")
    victim = await asyncio.to_thread(cluster.ray.describe, cluster.pool)
    os.kill(victim["pid"], signal.SIGKILL)
    replaced = await _poll_async(
        lambda: _replaced(cluster, victim["name"]), "Ray to replace the killed replica"
    )
    served = load.outcomes["ok"]
    await _poll(lambda: load.outcomes["ok"] >= served + 4, "requests after the replacement")
    outcomes = await load.stop()
    assert outcomes["failed_before_streaming"] == 0, outcomes
    assert victim["name"] not in {r.name for r in replaced}


async def test_engine_replicas_autoscale_1_2_1_under_a_load_step(cluster: Cluster) -> None:
    pool = EnginePoolSettings(
        name=POOL, min_replicas=1, max_replicas=2, num_cpus=0.25, target_queue_depth=2,
        upscale_delay_s=0.5, downscale_delay_s=2.0, look_back_s=1.0, metrics_interval_s=0.25,
    )  # fmt: skip
    await asyncio.to_thread(cluster.ray.deploy_pools, cluster.plan, [pool])
    seen = [await _replicas_settle_at(cluster, pool, 1)]
    load = Load(cluster.client(await cluster.key("step", "sam")), clients=6)
    seen.append(await _replicas_settle_at(cluster, pool, 2))
    outcomes = await load.stop()
    seen.append(await _replicas_settle_at(cluster, pool, 1))
    assert seen == [1, 2, 1]
    assert outcomes["failed_before_streaming"] == 0, outcomes


# -- load --------------------------------------------------------------------------------------


class Load:
    """`clients` loops each streaming chats of `max_tokens` until `stop()`; every request ends
    as "ok", "failed_before_streaming" (an error before its first chunk: what failover must
    prevent) or "failed_midstream" (its replica died while it streamed)."""

    def __init__(self, client: openai.AsyncOpenAI, clients: int, max_tokens: int = 48) -> None:
        self.client = client
        self.max_tokens = max_tokens
        self.outcomes: Counter[str] = Counter()
        self.streaming = 0  # requests between their first chunk and their end
        self._stopping = asyncio.Event()
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(clients)]

    async def stop(self) -> Counter[str]:
        self._stopping.set()
        await asyncio.gather(*self._tasks)
        await self.client.close()
        return self.outcomes

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            self.outcomes[await self._one()] += 1

    async def _one(self) -> str:
        started = False
        try:
            stream = await self.client.chat.completions.create(
                model=MODEL, messages=PROMPT, max_tokens=self.max_tokens, stream=True,
                extra_body={"ignore_eos": True},
            )  # fmt: skip
            async for _ in stream:
                if not started:
                    started, self.streaming = True, self.streaming + 1
            return "ok"
        except (openai.APIError, httpx.HTTPError):
            return "failed_midstream" if started else "failed_before_streaming"
        finally:
            self.streaming -= started


# -- prefix hits -------------------------------------------------------------------------------

Chat = list[dict[str, str]]
Usage = tuple[str, int, int]  # (answer, prompt tokens, of those cached)


def _conversations(salt: str) -> tuple[list[Chat], list[int]]:
    """FAMILIES long system prompts (about 200 tokens), CONVERSATIONS_EACH conversations on
    each, and the shuffled order their TURNS come in."""
    rng = random.Random(11)
    systems = [
        f"[{salt}] You answer for product line {f}. Notes: "
        + " ".join(rng.choice(WORDS) for _ in range(150))
        for f in range(FAMILIES)
    ]
    chats = [[{"role": "system", "content": systems[c % FAMILIES]}]
             for c in range(FAMILIES * CONVERSATIONS_EACH)]  # fmt: skip
    order = [c for _ in range(TURNS) for c in rng.sample(range(len(chats)), len(chats))]
    return chats, order


async def _prefix_hit_rate(send: Callable[[Chat], Awaitable[Usage]], salt: str) -> float:
    """Cached prompt tokens over prompt tokens, the turns sent one after another."""
    chats, order = _conversations(salt)
    prompt = cached = 0
    for turn, c in enumerate(order):
        chats[c].append({"role": "user", "content": f"Turn {turn}: where is my order?"})
        answer, prompt_tokens, cached_tokens = await send(chats[c])
        chats[c].append({"role": "assistant", "content": answer})
        prompt, cached = prompt + prompt_tokens, cached + cached_tokens
    return cached / prompt


async def _via_gateway(client: openai.AsyncOpenAI, chat: Chat) -> Usage:
    done = await client.chat.completions.create(
        model=MODEL,
        messages=chat,
        max_tokens=4,
    )
    assert done.usage is not None and done.usage.prompt_tokens_details is not None
    cached = done.usage.prompt_tokens_details.cached_tokens or 0
    return done.choices[0].message.content or "", done.usage.prompt_tokens, cached


async def _via_router(router: Router, chat: Chat) -> Usage:
    deadline = asyncio.get_running_loop().time() + 120
    body = {"model": MODEL, "messages": chat, "max_tokens": 4}
    reply = await router.dispatch(MODEL, UpstreamCall("/chat/completions", body, False, "rr",
                                                      deadline))  # fmt: skip
    try:
        assert reply.status == 200 and reply.body is not None, reply.body
        done = json.loads(reply.body)
    finally:
        await reply.aclose()
    usage = done["usage"]
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    return done["choices"][0]["message"]["content"], usage["prompt_tokens"], cached


async def _round_robin_router(cluster: Cluster) -> Router:
    """A router over the pool's replicas as the gateways see them, in round-robin order."""
    settings = cluster.plan.gateway_settings(cluster.deployed.models)
    router = Router([], settings.routing, order=RoundRobin(), declared=[MODEL])
    discovery = Discovery.from_settings(router, settings)
    assert discovery is not None
    await discovery.refresh()
    await discovery.aclose()  # the members stay; the replicas do not change meanwhile
    assert len(router.members) == 2
    return router


# -- helpers -----------------------------------------------------------------------------------


async def _short_chat(cluster: Cluster, key: str) -> tuple[int, str]:
    """(status, answering gateway replica) of a one-token chat."""
    client = cluster.client(key)
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=PROMPT, max_tokens=1
        )
        return raw.status_code, raw.headers["x-strata-gateway"]
    except openai.APIStatusError as exc:
        return exc.status_code, exc.response.headers["x-strata-gateway"]
    finally:
        await client.close()


async def _replaced(cluster: Cluster, victim: str) -> list[ReplicaRecord] | None:
    """The pool's replicas once it is back to two without `victim`, else None."""
    replicas = await cluster.replicas()
    names = {r.name for r in replicas}
    return replicas if len(names) == 2 and victim not in names else None


async def _replicas_settle_at(cluster: Cluster, pool: EnginePoolSettings, count: int) -> int:
    """`count` once Ray runs that many replicas and the registry lists as many."""

    async def settled() -> int | None:
        running = await asyncio.to_thread(cluster.ray.replicas_running, pool)
        listed = len(await cluster.replicas())
        return count if running == listed == count else None

    return await _poll_async(settled, f"{count} replica(s) running and registered")


async def _poll(done: Callable[[], bool], what: str, timeout_s: float = 120.0) -> None:
    async def check() -> bool | None:
        return True if done() else None

    await _poll_async(check, what, timeout_s)


async def _poll_async(
    check: Callable[[], Awaitable[T | None]], what: str, timeout_s: float = 120.0
) -> T:
    """The first non-None result of `check`, polled every 0.1 s; fails naming `what`."""
    deadline = time.monotonic() + timeout_s
    while (result := await check()) is None:
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s"
        await asyncio.sleep(0.1)
    return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
