"""The registry of replicas in Redis: engine replicas announce where they answer, gateways read
who is there (`discovery`).

One pool (an `upstreams[].discover` name, a `strata deploy ray` engine pool) is:

    strata:registry:<pool>              a set of replica names
    strata:registry:<pool>:<replica>    JSON {"url", "models"}, expiring after `ttl_s`

A replica re-announces itself every heartbeat, which renews the expiry; a replica that dies
without withdrawing (SIGKILL, a lost node) drops out when its entry expires, and readers prune
the name from the set. Expiry runs on Redis' clock, so replicas and gateways need not agree on
the time. Every call raises `RegistryError` when Redis cannot be reached.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

from strata.errors import StrataError

PREFIX = "strata:registry"
SOCKET_TIMEOUT_S = 2.0


class RegistryError(StrataError):
    """Redis could not be reached or answered with an error; the message says which call."""


@dataclass(frozen=True)
class ReplicaRecord:
    """One replica as it announces itself: its name within the pool (unique), the base URL of
    its OpenAI-compatible API up to /v1, and the model names it serves."""

    name: str
    url: str
    models: tuple[str, ...]

    def encode(self) -> bytes:
        return orjson.dumps({"url": self.url, "models": list(self.models)})

    @classmethod
    def decode(cls, name: str, raw: bytes | str) -> ReplicaRecord | None:
        """The record, or None for an entry that is not one (written by something else)."""
        try:
            data = orjson.loads(raw)
            return cls(name, str(data["url"]), tuple(str(m) for m in data["models"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None


class Registry:
    """Announce, withdraw and list the replicas of pools in one Redis. Owns its client."""

    def __init__(self, client: Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> Registry:
        return cls(
            Redis.from_url(
                url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S
            )
        )

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def announce(self, pool: str, record: ReplicaRecord, ttl_s: float) -> None:
        """Add `record` to `pool`, or renew it, for `ttl_s` seconds."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(_entry(pool, record.name), record.encode(), px=max(1, int(ttl_s * 1000)))
            pipe.sadd(_index(pool), record.name)
            await self._run(pipe, f"announce {record.name} in {pool}")

    async def withdraw(self, pool: str, name: str) -> None:
        """Remove replica `name` from `pool` (a no-op when it is not there)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(_entry(pool, name))
            pipe.srem(_index(pool), name)
            await self._run(pipe, f"withdraw {name} from {pool}")

    async def replicas(self, pool: str) -> list[ReplicaRecord]:
        """The replicas of `pool` whose entries have not expired, by name; expired names are
        pruned from the set on the way."""
        try:
            names = sorted(_text(n) for n in await self._redis.smembers(_index(pool)))
            raws: list[bytes | str | None] = (
                await self._redis.mget([_entry(pool, n) for n in names]) if names else []
            )
            gone = [n for n, raw in zip(names, raws, strict=True) if raw is None]
            if gone:
                await self._redis.srem(_index(pool), *gone)
        except RedisError as exc:
            raise RegistryError(f"registry: cannot read pool {pool}: {exc}") from exc
        records = (ReplicaRecord.decode(n, raw) for n, raw in zip(names, raws, strict=True) if raw)
        return [record for record in records if record is not None]

    @staticmethod
    async def _run(pipe: Pipeline, what: str) -> None:
        try:
            await pipe.execute()
        except RedisError as exc:
            raise RegistryError(f"registry: cannot {what}: {exc}") from exc


def _index(pool: str) -> str:
    return f"{PREFIX}:{pool}"


def _entry(pool: str, name: str) -> str:
    return f"{PREFIX}:{pool}:{name}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
