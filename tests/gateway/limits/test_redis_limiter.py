"""RedisLimiter specifics on a real redis-server: keys and TTLs, round trips, leases, seeding,
outages, and several OS processes sharing one budget. The shared contract is in
test_contract.py."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from strata.config import LimitSettings
from strata.errors import OverloadedError, RateLimitError
from strata.gateway.limits import (
    CONCURRENCY,
    UNREACHABLE_CODE,
    Ask,
    RedisLimiter,
    SeedEntry,
    Usage,
)
from strata.gateway.limits.meters import DAILY_TOKENS, TPM
from strata.gateway.limits.redis_limiter import GRACE_S, PREFIX, counter_key, slots_key
from strata.gateway.limits.windows import day, minute
from tests.support.redis_server import RedisServer

from . import FakeClock, scope

REPO = Path(__file__).resolve().parents[3]
EVERY_LIMIT = {
    "rpm": 10,
    "tpm": 1000,
    "concurrent": 2,
    "daily_tokens": 10_000,
    "monthly_tokens": 100_000,
    "daily_cost_usd": 1.0,
    "monthly_cost_usd": 10.0,
}


# Redis counts the commands a script runs as well as the EVALSHA that ran it.
_SCRIPT_COMMANDS = ["get", "set", "exists", "incrby", "decrby", "pexpireat"]
_SCRIPT_COMMANDS += ["zadd", "zrem", "zcard", "zremrangebyscore"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def limiter(redis_url: str, clock: FakeClock) -> AsyncIterator[RedisLimiter]:
    limiter = RedisLimiter.from_url(redis_url, LimitSettings(concurrency_lease_s=30), clock)
    yield limiter
    await limiter.aclose()


@pytest.fixture
def inspect(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client


async def test_every_key_is_namespaced_and_expires(
    limiter: RedisLimiter, inspect: redis.Redis, clock: FakeClock
) -> None:
    await limiter.reserve([scope("tenant", "acme", **EVERY_LIMIT)], Ask(tokens=10, cost_usd=0.01))
    keys = sorted(inspect.scan_iter("*"))
    assert len(keys) == 7 and all(k.startswith(f"{PREFIX}:tenant:acme:") for k in keys)
    assert all(inspect.pttl(k) > 0 for k in keys)
    minute_key = counter_key("tenant", "acme", TPM, minute(clock.now).number)
    assert inspect.get(minute_key) == "10"
    assert inspect.pexpiretime(minute_key) == (minute(clock.now).resets_at + GRACE_S) * 1000


async def test_one_round_trip_per_reserve_and_per_settle(
    limiter: RedisLimiter, inspect: redis.Redis
) -> None:
    scopes = [scope("key", "k", **EVERY_LIMIT), scope("tenant", "t", **EVERY_LIMIT)]
    await limiter.release(await limiter.reserve(scopes, Ask(tokens=5)))  # loads the scripts
    inspect.config_resetstat()
    await limiter.settle(await limiter.reserve(scopes, Ask(tokens=5)), Usage(tokens=1))
    unlimited = [scope("key", "free"), scope("tenant", "free")]
    await limiter.settle(await limiter.reserve(unlimited, Ask(tokens=5)), Usage(tokens=1))
    stats = inspect.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 2
    inside_scripts = {f"cmdstat_{c}" for c in _SCRIPT_COMMANDS}
    assert set(stats) - inside_scripts == {"cmdstat_evalsha", "cmdstat_config|resetstat"}


async def test_a_dead_gateways_slot_is_freed_when_its_lease_expires(
    redis_url: str, clock: FakeClock, inspect: redis.Redis
) -> None:
    settings = LimitSettings(concurrency_lease_s=30)
    dead = RedisLimiter.from_url(redis_url, settings, clock)
    alive = RedisLimiter.from_url(redis_url, settings, clock)
    scopes = [scope("user", "acme/alice", concurrent=1)]
    lost = await dead.reserve(scopes, Ask())
    await dead.aclose()  # the gateway dies holding the slot
    clock.advance(29)
    with pytest.raises(RateLimitError) as info:
        await alive.reserve(scopes, Ask())
    assert info.value.code == CONCURRENCY
    clock.advance(2)
    held = await alive.reserve(scopes, Ask())
    assert inspect.zrange(slots_key("user", "acme/alice"), 0, -1) == [held.id]
    assert lost.id != held.id
    await alive.aclose()


async def test_seed_sets_only_missing_counters_with_a_ttl(
    limiter: RedisLimiter, inspect: redis.Redis, clock: FakeClock
) -> None:
    today = day(clock.now)
    live = counter_key("tenant", "acme", DAILY_TOKENS, today.number)
    inspect.set(live, 42)
    await limiter.seed([SeedEntry("tenant", "acme", 1000, 0.5, 5000, 2.5)])
    assert inspect.get(live) == "42"
    seeded = {k: str(inspect.get(k)) for k in inspect.scan_iter(f"{PREFIX}:tenant:acme:*")}
    assert sorted(seeded.values()) == sorted(["42", "5000", "500000", "2500000"])
    assert all(inspect.pttl(k) > 0 for k in seeded if k != live)


async def test_a_settle_never_recreates_an_expired_counter_or_goes_negative(
    limiter: RedisLimiter, inspect: redis.Redis, clock: FakeClock
) -> None:
    key = counter_key("key", "k1", TPM, minute(clock.now).number)
    expired = await limiter.reserve([scope(tpm=100)], Ask(tokens=50))
    inspect.delete(key)  # as if its TTL ran out
    await limiter.release(expired)
    assert inspect.exists(key) == 0
    shrunk = await limiter.reserve([scope(tpm=100)], Ask(tokens=50))
    inspect.set(key, 10, keepttl=True)
    await limiter.release(shrunk)
    assert inspect.get(key) == "0"


async def test_scripts_survive_a_script_flush(limiter: RedisLimiter, inspect: redis.Redis) -> None:
    await limiter.reserve([scope(rpm=5)], Ask())
    inspect.script_flush()
    await limiter.reserve([scope(rpm=5)], Ask())


async def test_fail_closed_refuses_with_503_when_redis_is_down(
    own_redis_server: RedisServer,
) -> None:
    limiter = RedisLimiter.from_url(own_redis_server.url, LimitSettings(on_redis_error="closed"))
    await limiter.reserve([scope(rpm=5)], Ask())
    own_redis_server.stop()
    started = time.monotonic()
    with pytest.raises(OverloadedError) as info:
        await limiter.reserve([scope(rpm=5)], Ask())
    assert time.monotonic() - started < 2.0
    assert info.value.status_code == 503
    assert info.value.code == UNREACHABLE_CODE
    assert "limit store (Redis) is unreachable" in info.value.message
    with pytest.raises(OverloadedError):
        await limiter.seed([SeedEntry("key", "k1", 1, 0.0, 1, 0.0)])
    assert (await limiter.reserve([scope("key", "free")], Ask())).checks == ()  # no Redis needed
    await limiter.aclose()


async def test_fail_open_admits_uncounted_and_logs_once(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RedisLimiter.from_url(own_redis_server.url, LimitSettings(on_redis_error="open"))
    before = await limiter.reserve([scope(rpm=5, concurrent=1)], Ask())
    own_redis_server.stop()
    with caplog.at_level(logging.WARNING, logger="strata.gateway.limits.redis_limiter"):
        during = [await limiter.reserve([scope(rpm=1)], Ask()) for _ in range(3)]
        await limiter.settle(before, Usage(tokens=1))  # logged and dropped, never raised
        await limiter.settle(during[0], Usage(tokens=1))
    assert all(r.checks == () for r in during)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "admitting requests without counting" in messages[0]
    assert f"reservation {before.id} was not given back" in messages[1]
    await limiter.aclose()


async def test_limits_work_again_once_redis_is_back(own_redis_server: RedisServer) -> None:
    limiter = RedisLimiter.from_url(own_redis_server.url, LimitSettings())
    await limiter.reserve([scope(rpm=5)], Ask())
    own_redis_server.stop()
    with pytest.raises(OverloadedError):
        await limiter.reserve([scope(rpm=5)], Ask())
    own_redis_server.start()  # empty: no counters, no cached scripts
    await limiter.reserve([scope(rpm=1)], Ask())
    with pytest.raises(RateLimitError):
        await limiter.reserve([scope(rpm=1)], Ask())
    await limiter.aclose()


# Run in separate OS processes: wait until every process is ready, then fire all reserves at
# once and report how many were admitted.
_WORKER = """
import asyncio, json, sys, time
import redis
from strata.config import LimitSettings
from strata.errors import RateLimitError
from strata.gateway.limits import Ask, RedisLimiter, Usage
from strata.gateway.principal import Limits, Scope

url, mode, processes, attempts = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "budget":
    scopes = [Scope("key", "shared", Limits(daily_tokens=500)), Scope("tenant", "t", Limits())]
else:
    scopes = [Scope("tenant", "t", Limits(concurrent=7, rpm=10_000))]

async def one(limiter):
    try:
        reservation = await limiter.reserve(scopes, Ask(tokens=10))
    except RateLimitError:
        return 0
    if mode == "budget":
        await limiter.settle(reservation, Usage(tokens=10))
    return 1

async def main():
    limiter = RedisLimiter.from_url(url, LimitSettings())
    await limiter.release(await limiter.reserve([Scope("key", "warm", Limits(rpm=10**6))], Ask()))
    sync = redis.Redis.from_url(url)
    sync.incr("test:ready")
    deadline = time.monotonic() + 20
    while int(sync.get("test:ready")) < processes:
        assert time.monotonic() < deadline, "the other workers never got ready"
        time.sleep(0.002)
    results = await asyncio.gather(*(one(limiter) for _ in range(attempts)))
    print(json.dumps(sum(results)))
    await limiter.aclose()

asyncio.run(main())
"""


def _hammer(redis_url: str, mode: str, processes: int = 2, attempts: int = 60) -> list[int]:
    args = [redis_url, mode, str(processes), str(attempts)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, *args], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    outputs = [worker.communicate(timeout=30)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    return [json.loads(output) for output in outputs]


def test_a_budget_holds_exactly_across_processes(redis_url: str) -> None:
    admitted = _hammer(redis_url, "budget")
    assert sum(admitted) == 50  # 500 tokens / 10 per request, out of 120 attempts
    with redis.Redis.from_url(redis_url) as inspect:
        (key,) = inspect.keys(f"{PREFIX}:key:shared:daily_tokens:*")
        assert inspect.get(key) == b"500"


def test_concurrency_holds_exactly_across_processes(redis_url: str) -> None:
    assert sum(_hammer(redis_url, "slots")) == 7


async def test_a_burst_beyond_the_connection_pool_waits_instead_of_failing(
    limiter: RedisLimiter,
) -> None:
    scopes = [scope("tenant", "acme", tpm=1000)]
    results = await asyncio.gather(
        *(limiter.reserve(scopes, Ask(tokens=10)) for _ in range(300)), return_exceptions=True
    )
    assert not [r for r in results if isinstance(r, OverloadedError)]  # 300 > 64 connections
    assert sum(not isinstance(r, BaseException) for r in results) == 100


async def test_a_cancelled_reserve_leaves_nothing_taken(
    redis_url: str, clock: FakeClock, inspect: redis.Redis
) -> None:
    limiter = RedisLimiter.from_url(redis_url, LimitSettings(), clock)
    scopes = [scope("user", "u", concurrent=1, tpm=100)]
    await limiter.release(await limiter.reserve([scope(rpm=1)], Ask()))  # connect, load scripts
    inspect.client_pause(300, all=False)  # scripts wait in Redis until the pause ends
    waiting = asyncio.ensure_future(limiter.reserve(scopes, Ask(tokens=100)))
    await asyncio.sleep(0.05)
    waiting.cancel()  # the caller gives up while its script is queued in Redis
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await limiter.aclose()  # the script ran after the pause; the give-back it left runs too
    assert inspect.zcard(slots_key("user", "u")) == 0
    assert inspect.get(counter_key("user", "u", TPM, minute(clock.now).number)) == "0"


async def test_a_cancelled_release_still_gives_everything_back(
    limiter: RedisLimiter, inspect: redis.Redis
) -> None:
    scopes = [scope("user", "u", concurrent=1)]
    reservation = await limiter.reserve(scopes, Ask())
    inspect.client_pause(300, all=False)
    releasing = asyncio.ensure_future(limiter.release(reservation))
    await asyncio.sleep(0.05)
    releasing.cancel()  # e.g. the client went away and its cancel scope fired again
    with pytest.raises(asyncio.CancelledError):
        await releasing
    await limiter.aclose()
    assert inspect.zcard(slots_key("user", "u")) == 0
