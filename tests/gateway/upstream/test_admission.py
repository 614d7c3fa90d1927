"""Fair admission in the router: while every upstream of a model is at `max_in_flight`, calls
wait in a queue served by tokens per tenant; bounded waits end in a 503 that says why.

Replies are held open (non-streamed replies keep their slot until closed), so each test frees
slots one at a time and reads the order in which waiters were let through."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from strata.config import RoutingSettings, UpstreamSettings
from strata.errors import OverloadedError, UpstreamError
from strata.fairness import KEY_HEADER, WEIGHT_HEADER, FairnessTag, opaque_key
from strata.gateway.upstream import Router, UpstreamCall, UpstreamReply
from strata.gateway.upstream.member import Member
from strata.gateway.upstream.upstreams import EngineBinding, EngineUpstream, HttpUpstream
from tests.gateway.conftest import gateway_settings
from tests.gateway.upstream.test_router import MODEL, make, routers, upstream
from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream

__all__ = ["routers"]  # the fixture, shared with the router tests


@pytest.fixture(scope="module")
def solo_mock() -> Iterator[MockUpstream]:
    with MockUpstream("solo") as mock:
        yield mock


@pytest.fixture
def solo(solo_mock: MockUpstream) -> MockUpstream:
    solo_mock.reset()
    return solo_mock


def call(tenant: str, *, weight: float = 1.0, tokens: int = 100, deadline_s: float = 10.0
         ) -> UpstreamCall:  # fmt: skip
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
    deadline = asyncio.get_running_loop().time() + deadline_s
    return UpstreamCall("/chat/completions", body, False, "req-1", deadline,
                        fairness=FairnessTag(tenant, weight), reserved_tokens=tokens)  # fmt: skip


class Senders:
    """Dispatches calls as tasks; records the order in which they got through."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.order: list[str] = []
        self.replies: asyncio.Queue[UpstreamReply] = asyncio.Queue()
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def send(self, name: str, tenant: str, **kw: Any) -> None:
        self.tasks[name] = asyncio.create_task(self._send(name, call(tenant, **kw)))

    async def _send(self, name: str, upstream_call: UpstreamCall) -> None:
        reply = await self.router.dispatch(MODEL, upstream_call)
        self.order.append(name)
        await self.replies.put(reply)

    async def until_waiting(self, count: int) -> None:
        room = self.router.admission.rooms[MODEL]
        while len(room.queue) < count:
            await asyncio.sleep(0)

    async def release(self, count: int) -> None:
        """Close `count` replies as they come: each frees the slot the next waiter takes."""
        for _ in range(count):
            reply = await asyncio.wait_for(self.replies.get(), 10)
            await reply.aclose()


@pytest.fixture
async def held(routers: list[Router], solo: MockUpstream) -> AsyncIterator[Senders]:
    """A router over one upstream with room for one call, already taken (by tenant "A")."""
    router = make(routers, upstream(solo, max_in_flight=1))
    senders = Senders(router)
    await senders.replies.put(await router.dispatch(MODEL, call("A")))
    senders.order.append("first")
    yield senders
    for task in senders.tasks.values():
        task.cancel()
    await asyncio.gather(*senders.tasks.values(), return_exceptions=True)
    while not senders.replies.empty():
        await senders.replies.get_nowait().aclose()


async def test_a_tenant_that_arrives_behind_a_flood_goes_first(held: Senders) -> None:
    for i in range(10):
        held.send(f"A{i}", "A")
    await held.until_waiting(10)
    held.send("B0", "B")
    held.send("B1", "B")
    await held.until_waiting(12)
    await held.release(13)
    assert held.order[0] == "first"
    assert held.order.index("B0") == 1 and held.order.index("B1") <= 3  # not behind 10 A's
    assert len(held.order) == 13


async def test_weights_two_to_one_share_the_slots_two_to_one(held: Senders) -> None:
    for i in range(30):
        held.send(f"g{i}", "gold", weight=2.0)
        held.send(f"b{i}", "bronze", weight=1.0)
    await held.until_waiting(60)
    await held.release(31)
    let_through = held.order[1:31]
    gold = sum(name.startswith("g") for name in let_through)
    assert 18 <= gold <= 22  # 20 of 30: twice bronze's share


async def test_tokens_not_requests_are_shared(held: Senders) -> None:
    for i in range(20):
        held.send(f"big{i}", "big", tokens=1000)
        held.send(f"small{i}", "small", tokens=100)
    await held.until_waiting(40)
    await held.release(23)
    let_through = held.order[1:23]
    assert sum(name.startswith("small") for name in let_through) >= 18  # ~10 smalls per big


async def test_a_wait_is_bounded_and_ends_in_a_503_saying_why(
    routers: list[Router], solo: MockUpstream
) -> None:
    router = make(routers, upstream(solo, max_in_flight=1), fairness={"max_wait_s": 0.2})
    first = await router.dispatch(MODEL, call("A"))
    with pytest.raises(OverloadedError) as caught:
        await router.dispatch(MODEL, call("B"))
    error = caught.value
    assert error.code == "upstream_saturated" and error.status_code == 503
    assert error.retry_after_s is not None and error.retry_after_s >= 1
    assert "max_in_flight" in error.message and "fair turn" in error.message
    assert len(router.admission.rooms[MODEL].queue) == 0
    await first.aclose()
    second = await router.dispatch(MODEL, call("B"))  # the slot is free again
    await second.aclose()


async def test_a_full_queue_answers_503_at_once(routers: list[Router], solo: MockUpstream) -> None:
    router = make(routers, upstream(solo, max_in_flight=1), fairness={"max_waiting": 1})
    first = await router.dispatch(MODEL, call("A"))
    waiter = asyncio.create_task(router.dispatch(MODEL, call("A")))
    while not router.admission.rooms[MODEL].queue:
        await asyncio.sleep(0)
    with pytest.raises(OverloadedError) as caught:
        await router.dispatch(MODEL, call("B"))
    assert caught.value.code == "upstream_queue_full"
    await first.aclose()
    await (await waiter).aclose()


async def test_a_waiter_that_gives_up_leaves_the_queue_and_its_turn_passes_on(
    held: Senders,
) -> None:
    held.send("gone", "A")
    held.send("next", "A")
    await held.until_waiting(2)
    first = await held.replies.get()
    await first.aclose()  # lets "gone" through; it has not run yet
    held.tasks["gone"].cancel()  # its caller went away before using the slot
    await held.release(1)
    assert held.order == ["first", "next"]
    assert held.router.admission.rooms[MODEL].pending == 0


async def test_a_cancelled_waiter_is_taken_out_of_the_queue(held: Senders) -> None:
    held.send("a", "A")
    await held.until_waiting(1)
    held.tasks["a"].cancel()
    await asyncio.gather(held.tasks["a"], return_exceptions=True)
    assert len(held.router.admission.rooms[MODEL].queue) == 0


async def test_a_member_that_joins_lets_waiters_through(held: Senders, solo: MockUpstream) -> None:
    held.send("a", "A")
    await held.until_waiting(1)
    (saturated,) = held.router.groups[MODEL]
    settings = UpstreamSettings(name="joined", url=solo.url, models=[MODEL])
    joined = Member(HttpUpstream(settings), saturated.breaker)
    held.router.admission.follow({MODEL: (saturated, joined)})  # as discovery does
    await asyncio.wait_for(held.tasks["a"], 10)  # let through: the newcomer has room
    assert held.order == ["first", "a"]
    assert held.router.admission.rooms[MODEL].pump in joined.on_finished
    await joined.upstream.aclose()


class AwaitingOrder:
    """Orders like the tier policy, but suspends first (as prefix affinity's tokenizing does)."""

    async def order(self, members: Sequence[Member], call: UpstreamCall) -> Sequence[Member]:
        await asyncio.sleep(0.01)
        return members


async def test_calls_let_through_together_never_take_more_slots_than_there_are(
    routers: list[Router], solo: MockUpstream
) -> None:
    router = Router([upstream(solo, max_in_flight=2)], RoutingSettings(), order=AwaitingOrder())
    routers.append(router)
    (member,) = router.members
    peaks: list[int] = []
    member.on_started.append(lambda: peaks.append(member.in_flight))
    senders = Senders(router)
    for i in range(6):
        senders.send(f"r{i}", "A")
    await senders.until_waiting(4)  # two let through at once, still ordering: the rest wait
    await senders.release(6)
    assert max(peaks) == 2 and len(peaks) == len(senders.order) == 6
    assert router.admission.rooms[MODEL].pending == 0


async def test_a_call_let_through_that_never_starts_gives_its_slot_back(
    routers: list[Router], solo: MockUpstream
) -> None:
    router = make(routers, upstream(solo, max_in_flight=1))
    with pytest.raises(UpstreamError, match="deadline is too close"):  # no attempt starts
        await router.dispatch(MODEL, call("A", deadline_s=0.0))
    room = router.admission.rooms[MODEL]
    assert room.pending == 0 and room.free_slots() == 1


async def test_without_a_limit_nothing_waits(routers: list[Router], solo: MockUpstream) -> None:
    router = make(routers, upstream(solo))
    replies = await asyncio.gather(*(router.dispatch(MODEL, call("A")) for _ in range(5)))
    assert len(router.admission.rooms[MODEL].queue) == 0
    for reply in replies:
        await reply.aclose()


async def test_waits_are_reported_per_tenant(held: Senders) -> None:
    waits: list[tuple[str, float]] = []
    held.router.admission.observers.append(lambda tenant, s: waits.append((tenant, s)))
    held.send("A0", "A")
    await held.until_waiting(1)
    await held.release(2)
    assert [tenant for tenant, _ in waits] == ["A"] and waits[0][1] >= 0


async def test_the_upstream_gets_an_opaque_key_and_the_weight(
    routers: list[Router], solo: MockUpstream
) -> None:
    router = make(routers, upstream(solo))
    reply = await router.dispatch(MODEL, call("acme", weight=3.0))
    await reply.aclose()
    headers = solo.requests[-1].headers
    assert headers[KEY_HEADER.lower()] == opaque_key("acme")
    assert headers[WEIGHT_HEADER.lower()] == "3"
    assert not any("acme" in value for value in headers.values())


async def test_the_in_process_engine_gets_them_too() -> None:
    seen: list[dict[str, str]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    engine = EngineUpstream(UpstreamSettings(name="engine", kind="engine"),
                            EngineBinding(app, "token", MODEL))  # fmt: skip
    reply = await engine.send(call("acme", weight=0.5), asyncio.get_running_loop().time() + 5)
    await reply.aclose()
    await engine.aclose()
    assert seen[0][KEY_HEADER.lower()] == opaque_key("acme")
    assert seen[0][WEIGHT_HEADER.lower()] == "0.5"


# -- through the whole gateway --------------------------------------------------------------------


def test_through_the_gateway_a_flooding_tenant_does_not_starve_another(
    pg_dsn: str, tmp_path: Path, solo: MockUpstream
) -> None:
    """Tenant "heavy" sends 12 calls at once to a model whose one upstream takes one at a time;
    tenant "light" (weight 2) sends 2 once the queue has formed. Light's reach the upstream
    among the next few, with its weight and an opaque key; its wait shows in /metrics."""
    solo.stall_s = 0.05
    settings = gateway_settings(
        pg_dsn, tmp_path,
        {"name": "solo", "url": solo.url, "models": [MODEL], "max_in_flight": 1},
        routing={"fairness": {"weights": {"light": 2}}},
        telemetry={"tenant_labels": ["light"]},
    )  # fmt: skip
    with LiveGateway(settings) as live:
        keys = {t: live.create_key(tenant=t, user="u") for t in ("heavy", "light")}
        room = live.runtime.router.admission.rooms[MODEL]
        asyncio.run(_flood(live, keys, lambda: len(room.queue)))
        with live.http(live.admin_key) as http:
            scrape = http.get("/metrics").text
    seen = [r.headers for r in solo.requests if r.path == "/v1/chat/completions"]
    light = [i for i, h in enumerate(seen) if h[KEY_HEADER.lower()] == opaque_key("light")]
    assert len(seen) == 14 and light and max(light) <= 5, light
    assert all(seen[i][WEIGHT_HEADER.lower()] == "2" for i in light)
    waited = re.search(r'gateway_fair_queue_wait_seconds_count\{tenant="light"\} (\S+)', scrape)
    assert waited is not None and float(waited.group(1)) == 2


async def _flood(live: LiveGateway, keys: dict[str, str], waiting: Callable[[], int]) -> None:
    async with httpx.AsyncClient(base_url=f"{live.url}/v1", timeout=60) as http:

        async def chat(tenant: str) -> int:
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
            auth = {"Authorization": f"Bearer {keys[tenant]}"}
            return (await http.post("/chat/completions", json=body, headers=auth)).status_code

        heavy = [asyncio.create_task(chat("heavy")) for _ in range(12)]
        while waiting() < 8:
            await asyncio.sleep(0.005)
        statuses = await asyncio.gather(chat("light"), chat("light"), *heavy)
    assert statuses == [200] * 14
