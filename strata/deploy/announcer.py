"""Keeping one engine replica announced in the registry while it serves.

The entry is written at once, then renewed every heartbeat; it expires after `TTL_HEARTBEATS`
missed ones, so a replica killed without a word (SIGKILL, a lost node) leaves the pool on its
own. `withdraw()` removes it at once: the first step of a graceful stop.
"""

from __future__ import annotations

import asyncio
import logging

from strata.background import stop
from strata.deploy.plan import TTL_HEARTBEATS
from strata.gateway.upstream.registry import Registry, RegistryError, ReplicaRecord

logger = logging.getLogger(__name__)


class Announcer:
    """One replica's entry in one pool. One event loop; `aclose()` when done."""

    def __init__(
        self, registry: Registry, pool: str, record: ReplicaRecord, heartbeat_s: float
    ) -> None:
        self.registry = registry
        self.pool = pool
        self.record = record
        self.heartbeat_s = heartbeat_s
        self._task: asyncio.Task[None] | None = None

    @property
    def ttl_s(self) -> float:
        return TTL_HEARTBEATS * self.heartbeat_s

    async def start(self) -> None:
        """Announce now (raises `RegistryError` when Redis cannot be reached: a replica nobody
        can find should not report itself started), then keep the entry fresh."""
        await self.registry.announce(self.pool, self.record, self.ttl_s)
        self._task = asyncio.create_task(self._beat())
        logger.info("announced %s at %s in pool %s", self.record.name, self.record.url, self.pool)

    async def withdraw(self) -> None:
        """Stop renewing and remove the entry (logged, not raised, when Redis is away: the
        entry then expires by itself)."""
        await stop(self._task)
        self._task = None
        try:
            await self.registry.withdraw(self.pool, self.record.name)
        except RegistryError as exc:
            logger.warning("%s; the entry expires within %.0f s", exc.message, self.ttl_s)

    async def aclose(self) -> None:
        await self.withdraw()
        await self.registry.aclose()

    async def _beat(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.heartbeat_s)
            try:
                await self.registry.announce(self.pool, self.record, self.ttl_s)
            except RegistryError as exc:
                if not failing:
                    logger.warning("heartbeat failed: %s", exc.message)
                failing = True
            else:
                failing = False
