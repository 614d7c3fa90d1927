"""Limits shared by every gateway replica through one Redis: exact across processes.

`reserve` is one EVAL of `scripts.RESERVE` (check every limit of every scope, then take from
all or none), `settle`/`release` one EVAL of `scripts.GIVE_BACK`; requests against unlimited
scopes make no round trip at all. Windows are numbered from the gateway's clock (replicas are
assumed NTP-synced; counters outlive their window by `GRACE_S` to absorb small skew).

When Redis cannot be reached, `reserve` follows `limits.on_redis_error`: "closed" raises
`OverloadedError` (503), "open" admits the request uncounted. `settle`/`release` never raise:
they log (throttled) and drop the correction, so the reservation keeps counting in full until
its window ends and its slot stays taken until its lease (`limits.concurrency_lease_s`)
expires, over-counting rather than under.

Both scripts run as tasks the caller's cancellation cannot stop (a client that disconnects
mid-admission or mid-settle): a cancelled reserve gives back whatever its script took, a
cancelled settle still completes. Assumes one Redis (or a primary with replicas); a Redis
Cluster would need the scopes' keys in one hash slot.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import Any, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from strata.config import LimitSettings
from strata.errors import OverloadedError
from strata.gateway.limits import scripts
from strata.gateway.limits.meters import Meter
from strata.gateway.limits.plan import plan, refunds, reservation_for, seed_counters
from strata.gateway.limits.rejections import Failure, rejection
from strata.gateway.limits.throttle import ThrottledWarning
from strata.gateway.limits.types import Ask, Check, Clock, Reservation, SeedEntry, Usage
from strata.gateway.principal import Scope

log = logging.getLogger(__name__)
_T = TypeVar("_T")

PREFIX = "strata:limits"
GRACE_S = 120  # counters live this long past their window's end
# A limit check is on every request's path: fail fast rather than hang on a sick Redis.
SOCKET_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 64  # each call holds one for well under a millisecond
UNREACHABLE_CODE = "limit_store_unavailable"


class RedisLimiter:
    """A `Limiter` kept in Redis (see `strata.gateway.limits.types.Limiter` for the contract).

    The limiter owns `client` and closes it in `aclose`; `from_url` builds a suitable one.
    """

    def __init__(self, client: Redis, settings: LimitSettings, clock: Clock = time.time) -> None:
        self._client = client
        self._fail_open = settings.on_redis_error == "open"
        self._lease_ms = round(settings.concurrency_lease_s * 1000)
        self._clock = clock
        self._reserve = client.register_script(scripts.RESERVE)
        self._give_back = client.register_script(scripts.GIVE_BACK)
        self._id_prefix = os.urandom(6).hex()  # reservation ids stay unique across replicas
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Future[Any]] = set()
        # One throttle per kind of trouble, so an outage's first give-back failure is not
        # hidden behind its reserve warnings.
        self._warn_admit = ThrottledWarning(log)
        self._warn_give_back = ThrottledWarning(log)
        self._warn_seed = ThrottledWarning(log)

    @classmethod
    def from_url(cls, url: str, settings: LimitSettings, clock: Clock = time.time) -> RedisLimiter:
        """A limiter with its own client: short timeouts; a pool that makes a burst wait for a
        free connection instead of failing; one retry after a dropped connection (never after
        a timeout, when the script may already have run)."""
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=SOCKET_TIMEOUT_S,  # waiting for a free connection
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        return cls(Redis.from_pool(pool), settings, clock)

    async def reserve(self, scopes: Sequence[Scope], ask: Ask) -> Reservation:
        now = self._clock()
        checks = plan(scopes, ask, now)
        reservation = reservation_for(f"{self._id_prefix}:{next(self._ids)}", ask, checks)
        if not checks:
            return reservation
        try:
            failed = await self._take(reservation, now)
        except RedisError as exc:
            return self._admit_unreachable(reservation, exc)
        if failed:
            raise rejection(_failures(checks, failed), now)
        return reservation

    async def settle(self, reservation: Reservation, usage: Usage) -> None:
        await self._return(reservation, usage)

    async def release(self, reservation: Reservation) -> None:
        await self._return(reservation, None)

    async def seed(self, entries: Iterable[SeedEntry]) -> None:
        """SET NX each day/month counter: a replica restarting never resets live counts."""
        now = self._clock()
        async with self._client.pipeline(transaction=False) as pipe:
            for entry in entries:
                for meter, value in seed_counters(entry):
                    assert meter.window is not None
                    window = meter.window(now)
                    key = counter_key(entry.kind, entry.scope_id, meter, window.number)
                    pipe.set(key, value, nx=True, pxat=_expiry_ms(window.resets_at))
            try:
                await pipe.execute()
            except RedisError as exc:
                self._seed_unreachable(exc)

    async def aclose(self) -> None:
        """Finish the give-backs still in flight, then close the client."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    async def _take(self, reservation: Reservation, now: float) -> list[int]:
        """Run RESERVE. If the caller is cancelled meanwhile, the script still finishes and
        whatever it took is given back, so a cancelled admission holds nothing."""
        keys = [key_of(check) for check in reservation.checks]
        call = self._spawn(self._reserve(keys=keys, args=self._reserve_args(reservation, now)))
        try:
            return await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(lambda _: self._undo(call, reservation))
            raise

    def _undo(self, call: asyncio.Future[list[int]], reservation: Reservation) -> None:
        if not call.cancelled() and call.exception() is None and not call.result():
            self._spawn(self.release(reservation))

    def _spawn(self, work: Awaitable[_T]) -> asyncio.Future[_T]:
        """Run `work` as a task the limiter keeps a reference to until it is done."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _reserve_args(self, reservation: Reservation, now: float) -> list[str | int]:
        now_ms = int(now * 1000)
        args: list[str | int] = [now_ms, now_ms + self._lease_ms, reservation.id]
        for check in reservation.checks:
            kind = "s" if check.meter.is_slots else "c"
            args += (kind, check.limit, check.amount, _expiry_ms(check.resets_at))
        return args

    async def _return(self, reservation: Reservation, usage: Usage | None) -> None:
        if not reservation.close():
            return
        back = refunds(reservation, usage)
        if back:
            # Shielded: a caller cancelled mid-settle (a client gone, a cancel scope) still
            # gets its counts and slot back.
            await asyncio.shield(self._spawn(self._give_back_now(reservation, back)))

    async def _give_back_now(self, reservation: Reservation, back: list[tuple[Check, int]]) -> None:
        args: list[str | int] = [reservation.id]
        for check, amount in back:
            args += ("s" if check.meter.is_slots else "c", amount)
        try:
            await self._give_back(keys=[key_of(check) for check, _ in back], args=args)
        except RedisError as exc:
            self._warn_give_back.warning(
                "Limit store (Redis) unreachable (%s): reservation %s was not given back; its "
                "counts stay until their windows end and its slot until its lease expires.",
                exc,
                reservation.id,
            )

    def _admit_unreachable(self, reservation: Reservation, exc: RedisError) -> Reservation:
        if not self._fail_open:
            raise OverloadedError(
                "The limit store (Redis) is unreachable, so limits cannot be checked and the "
                "request was refused; try again shortly.",
                code=UNREACHABLE_CODE,
            ) from exc
        self._warn_admit.warning(
            "Limit store (Redis) unreachable (%s): admitting requests without counting them "
            "(limits.on_redis_error = open).",
            exc,
        )
        return dataclasses.replace(reservation, checks=())

    def _seed_unreachable(self, exc: RedisError) -> None:
        if not self._fail_open:
            raise OverloadedError(
                "The limit store (Redis) is unreachable, so usage counters cannot be seeded.",
                code=UNREACHABLE_CODE,
            ) from exc
        self._warn_seed.warning("Limit store (Redis) unreachable (%s): counters not seeded.", exc)


def counter_key(kind: str, scope_id: str, meter: Meter, window: int) -> str:
    """The Redis key of one scope's count for one window of `meter`."""
    return f"{PREFIX}:{kind}:{scope_id}:{meter.name}:{window}"


def slots_key(kind: str, scope_id: str) -> str:
    """The Redis key of one scope's concurrency leases."""
    return f"{PREFIX}:{kind}:{scope_id}:concurrent"


def key_of(check: Check) -> str:
    scope = check.scope
    if check.meter.is_slots:
        return slots_key(scope.kind, scope.id)
    return counter_key(scope.kind, scope.id, check.meter, check.window)


def _failures(checks: tuple[Check, ...], reply: list[int]) -> list[Failure]:
    """`{i, used, ...}` from the script (1-based indexes) as (check, used) pairs."""
    pairs = zip(reply[::2], reply[1::2], strict=True)
    return [(checks[int(i) - 1], int(used)) for i, used in pairs]


def _expiry_ms(resets_at: float) -> int:
    return int((resets_at + GRACE_S) * 1000) if resets_at else 0
