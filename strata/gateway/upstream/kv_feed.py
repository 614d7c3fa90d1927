"""Keeps the `KvIndex` current: every `interval_s`, ask each strata engine what changed.

One background task reads all participating upstreams concurrently each round (the set is
read afresh every round, so replicas that join or leave are picked up). Each read is
`POST /v1/kv/events` with the view's cursor through the upstream's own transport (HTTP, or
the built-in engine's app in-process); it counts toward neither in-flight requests nor the
breaker. A failed read keeps the old view and is logged once until reads succeed again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from strata.background import stop
from strata.gateway.upstream.errors import TransportError
from strata.gateway.upstream.kv_index import KV_EVENTS, KvIndex
from strata.gateway.upstream.member import Member
from strata.gateway.upstream.upstreams import UpstreamCall

logger = logging.getLogger(__name__)

EVENTS_PATH = "/kv/events"  # after /v1, as every upstream call path
REQUEST_ID = "kv-events"


class KvFeed:
    def __init__(
        self, index: KvIndex, members: Callable[[], Sequence[Member]], interval_s: float
    ) -> None:
        self.index = index
        self.members = members  # the engines to read, asked afresh each round
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self._failing: set[str] = set()
        self._reading: dict[str, asyncio.Lock] = {}  # one read per engine at a time, in order

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None

    async def refresh(self) -> None:
        """Read every engine once now (a round of the background task)."""
        members = self.members()
        names = {m.name for m in members}
        self.index.keep_only(names)
        self._reading = {n: lock for n, lock in self._reading.items() if n in names}
        await asyncio.gather(*(self.read(m) for m in members))

    async def read(self, member: Member) -> None:
        """Apply what `member`'s engine reports since the view's cursor (after any read of
        it already under way, so that answers apply in the order they were given)."""
        async with self._reading.setdefault(member.name, asyncio.Lock()):
            await self._read(member)

    async def _read(self, member: Member) -> None:
        view = self.index.view(member.name)
        deadline = asyncio.get_running_loop().time() + max(2.0, self.interval_s)
        body = {"since": view.seq, "instance": view.instance}
        call = UpstreamCall(EVENTS_PATH, body, False, REQUEST_ID, deadline)
        try:
            reply = await member.upstream.send(call, deadline)
            if reply.status != 200 or reply.body is None:
                raise _Unreadable(f"answered HTTP {reply.status}")
            view.apply(KV_EVENTS.validate_json(reply.body), time.monotonic())
        except (TransportError, ValidationError, _Unreadable) as exc:
            self._failed(member.name, exc)
        else:
            self._recovered(member.name)

    async def _run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug must not silently end the reads
                logger.exception("reading the engines' KV events failed")
            await asyncio.sleep(self.interval_s)

    def _failed(self, name: str, exc: Exception) -> None:
        if name not in self._failing:
            self._failing.add(name)
            logger.warning(
                "cannot read the KV events of upstream %s (%s): routing to it without knowing "
                "its cached prefixes",
                name,
                exc if not isinstance(exc, ValidationError) else "not a strata engine's answer",
            )

    def _recovered(self, name: str) -> None:
        if name in self._failing:
            self._failing.discard(name)
            logger.info("reading the KV events of upstream %s again", name)


class _Unreadable(Exception):
    """The engine answered, but not with KV events."""
