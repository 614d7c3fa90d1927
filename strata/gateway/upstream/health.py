"""Periodic health checks: one task per upstream probes it every `interval_s` and marks it
healthy or not (`Member.healthy`), logging each change. Probes run under a deadline of one
interval, so a hung upstream is marked down rather than blocking its checker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from strata.gateway.upstream.errors import TransportError
from strata.gateway.upstream.member import Member

logger = logging.getLogger(__name__)


class HealthMonitor:
    def __init__(self, members: Sequence[Member], interval_s: float) -> None:
        self.members = members
        self.interval_s = interval_s
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start checking; the first check of each upstream runs at once."""
        self._tasks = [asyncio.create_task(self._watch(member)) for member in self.members]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def check(self, member: Member) -> None:
        """Probe `member` once and record the outcome."""
        deadline = asyncio.get_running_loop().time() + self.interval_s
        try:
            await member.upstream.check_health(deadline)
        except TransportError as exc:
            self._mark(member, healthy=False, error=str(exc))
        except Exception:  # a bug must not silently end this upstream's checks
            logger.exception("health check of upstream %s failed", member.name)
            self._mark(member, healthy=False, error="the health check itself failed")
        else:
            self._mark(member, healthy=True, error=None)

    async def _watch(self, member: Member) -> None:
        while True:
            await self.check(member)
            await asyncio.sleep(self.interval_s)

    @staticmethod
    def _mark(member: Member, *, healthy: bool, error: str | None) -> None:
        if healthy != member.healthy:
            state = "up" if healthy else f"down ({error})"
            log = logger.info if healthy else logger.warning
            log("upstream %s is %s", member.name, state)
        member.healthy = healthy
        if error is not None:
            member.last_error = f"health check: {error}"
