"""Fair admission: when every upstream serving a model is busy, requests wait their fair turn.

An upstream with `max_in_flight` is saturated at that many requests in flight. While any
available upstream of the model's group has room (or has no limit), a request goes through at
once. When all of them are saturated it waits in the group's queue, which serves tenants in
start-time fair order by tokens (`strata.fairness`): each time a request in flight ends and a
slot frees, the waiter of the tenant served the fewest weighted tokens goes first, so a tenant
flooding a model cannot starve the others. A tenant is charged what the gateway reserved for
the call (prompt estimate + max_tokens) when it is let through, queued or not: the router must
decide before any answer exists. Weights come from `routing.fairness.weights`.

A call let through holds a *pending* slot until its first attempt starts on an upstream (which
then counts it in flight) or its dispatch ends without one: so calls let through together, or
while the router still orders its upstreams (prefix affinity tokenizes in a thread), never take
more slots than there are. The router wraps each dispatch in `turn(...)`; `Member.started`
claims the pending slot of the turn whose task starts the attempt.

A wait is bounded: at `routing.fairness.max_wait_s` (or the call's deadline, if sooner) it ends
in a 503 `upstream_saturated` with Retry-After; a full queue (`max_waiting`) answers a 503
`upstream_queue_full` at once. With no upstream of the group available there is nothing to
wait for: the request goes on and the router reports the outage as before.

Capacity is counted over the whole group, not the subset one call may use (DPA, `supports`):
a call let through when only upstreams it may not use have room bursts past a limit, as every
call did before this queue existed.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from strata.config import FairnessSettings
from strata.errors import OverloadedError
from strata.fairness import DEFAULT_KEY, FairnessTag, FairQueue
from strata.gateway.upstream.member import Member
from strata.gateway.upstream.upstreams import UpstreamCall

RETRY_AFTER_S = 2.0  # the queue drains as replies close; a short pause is enough
WaitObserver = Callable[[str, float], None]  # (fairness key = tenant, seconds waited)


class FairAdmission:
    """One waiting room per model group. One event loop; one `turn` per dispatch."""

    def __init__(self, settings: FairnessSettings, groups: Mapping[str, Sequence[Member]]):
        self.settings = settings
        self.rooms: dict[str, WaitingRoom] = {}
        self.observers: list[WaitObserver] = []  # told each wait that happened
        self.follow(groups)

    def follow(self, groups: Mapping[str, Sequence[Member]]) -> None:
        """Point each model's room at its members now (membership may change while running):
        each member wakes its rooms when a slot frees, and waiters that now fit go at once."""
        for model, members in groups.items():
            room = self.rooms.setdefault(model, WaitingRoom(members))
            room.members = tuple(members)
            for member in members:
                if room.pump not in member.on_finished:
                    member.on_finished.append(room.pump)
                if claim_current_turn not in member.on_started:
                    member.on_started.append(claim_current_turn)
            room.pump()

    @asynccontextmanager
    async def turn(self, model: str, call: UpstreamCall) -> AsyncIterator[None]:
        """Enter when `call` may be sent to `model`'s group (`model` is a served name), at
        once or after its fair wait; raise `OverloadedError` when the wait is over or the
        queue is full. Its pending slot is given back on exit unless an attempt claimed it."""
        room = self.rooms[model]
        ticket = _Ticket(room, call.fairness or FairnessTag(DEFAULT_KEY), call.reserved_tokens)
        if room.queue or room.free_slots() <= 0:
            await self._wait(model, room, ticket, call.deadline)
        else:
            room.let_through(ticket)
        current = _CURRENT.set(ticket)
        try:
            yield
        finally:
            _CURRENT.reset(current)
            room.release(ticket)

    async def _wait(self, model: str, room: WaitingRoom, ticket: _Ticket, deadline: float) -> None:
        if len(room.queue) >= self.settings.max_waiting:
            raise _queue_full(model, len(room.queue))
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await room.wait(ticket, min(deadline, started + self.settings.max_wait_s))
        except TimeoutError:
            raise _saturated(model, loop.time() - started) from None
        finally:
            for observe in self.observers:
                observe(ticket.tag.key, loop.time() - started)


@dataclass(eq=False)
class _Ticket:
    room: WaitingRoom
    tag: FairnessTag
    tokens: int  # what letting it through charges its key (before the weight)
    turn: asyncio.Future[None] | None = None  # set when it starts waiting
    pending: bool = False  # let through, and no attempt has claimed its slot yet


_CURRENT: ContextVar[_Ticket | None] = ContextVar("strata_fair_turn", default=None)


def claim_current_turn() -> None:
    """`Member.started` listener: the dispatch running in this task took an upstream slot, so
    its turn's pending slot is now counted in flight instead."""
    ticket = _CURRENT.get()
    if ticket is not None:
        ticket.room.claim(ticket)


class WaitingRoom:
    """The fair queue in front of one group's upstreams; `pending` counts calls let through
    whose first attempt has not yet started (see the module docstring)."""

    def __init__(self, members: Sequence[Member]) -> None:
        self.members = tuple(members)
        self.queue: FairQueue[_Ticket] = FairQueue()
        self.pending = 0

    def free_slots(self) -> float:
        """Requests the group can take now; infinite when an upstream has no limit, or when
        none is available (then the router, not this queue, answers)."""
        available = [m for m in self.members if m.available]
        if not available:
            return math.inf
        return sum(_room_on(m) for m in available) - self.pending

    def let_through(self, ticket: _Ticket) -> None:
        key = ticket.tag.key
        self.queue.clock.start(key)
        self._admit(key, ticket)

    async def wait(self, ticket: _Ticket, deadline: float) -> None:
        ticket.turn = asyncio.get_running_loop().create_future()
        self.queue.push(ticket.tag.key, ticket)
        self.pump()
        try:
            async with asyncio.timeout_at(deadline):
                await ticket.turn
        except BaseException:
            if not ticket.pending:
                self.queue.remove(ticket.tag.key, ticket)  # never let through
            self.release(ticket)  # let through, but it gave up: its slot goes on
            raise

    def pump(self) -> None:
        """Let the fairest waiters through while the group has room."""
        while self.queue and self.free_slots() > 0:
            key, ticket = self.queue.pop()
            self._admit(key, ticket)
            assert ticket.turn is not None
            ticket.turn.set_result(None)

    def claim(self, ticket: _Ticket) -> None:
        if ticket.pending:
            ticket.pending = False
            self.pending -= 1

    def release(self, ticket: _Ticket) -> None:
        """The call is over or gave up: a slot it let through and never used frees."""
        if ticket.pending:
            self.claim(ticket)
            self.pump()

    def _admit(self, key: str, ticket: _Ticket) -> None:
        self.queue.clock.charge(key, ticket.tokens, ticket.tag.weight)
        ticket.pending = True
        self.pending += 1


def _room_on(member: Member) -> float:
    limit = member.upstream.settings.max_in_flight
    return math.inf if limit is None else max(0, limit - member.in_flight)


def _saturated(model: str, waited_s: float) -> OverloadedError:
    return OverloadedError(
        f"Every upstream serving the model '{model}' is at its max_in_flight, and this request "
        f"waited {waited_s:.1f} s for its fair turn without getting one; retry later.",
        retry_after_s=RETRY_AFTER_S,
        code="upstream_saturated",
    )


def _queue_full(model: str, waiting: int) -> OverloadedError:
    return OverloadedError(
        f"Every upstream serving the model '{model}' is at its max_in_flight and {waiting} "
        "requests already wait for a turn (routing.fairness.max_waiting); retry later.",
        retry_after_s=RETRY_AFTER_S,
        code="upstream_queue_full",
    )
