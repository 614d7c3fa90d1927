"""Periodic health checks: one task per upstream probes it every `interval_s` and marks it
healthy or not (`Member.healthy`), logging each change. Probes run under a deadline of one
interval, so a hung upstream is marked down rather than blocking its checker. `follow` changes
the upstreams checked while running (dynamic membership, `discovery`)."""

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
        self._tasks: dict[Member, asyncio.Task[None]] = {}
        self._started = False

    def start(self) -> None:
        """Start checking; the first check of each upstream runs at once."""
        self._started = True
        self.follow(self.members)

    def follow(self, members: Sequence[Member]) -> None:
        """Check `members` from now on: once started, a new one at once, and one no longer
        listed no more."""
        self.members = members
        if not self._started:
            return
        for member in [m for m in self._tasks if m not in members]:
            self._tasks.pop(member).cancel()
        for member in members:
            if member not in self._tasks:
                self._tasks[member] = asyncio.create_task(self._watch(member))

    async def aclose(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks = {}
        self._started = False

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
