"""Tiered routing: reserved first, bursting to spot then on-demand as upstreams saturate;
spot only behind an on-demand fallback; draining takes an upstream out of rotation at once."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from strata.config import RoutingSettings
from strata.errors import ConfigError, NotFoundError
from strata.gateway.upstream import Router
from tests.gateway.upstream.test_router import MODEL, chat, make, routers, text_of, upstream

__all__ = ["routers"]  # the fixture, shared with the router tests
from tests.support.mock_upstream import MockUpstream


@pytest.fixture(scope="module")
def tiers() -> Iterator[tuple[MockUpstream, MockUpstream, MockUpstream]]:
    with MockUpstream("od") as od, MockUpstream("spot") as spot, MockUpstream("res") as res:
        yield od, spot, res


@pytest.fixture(autouse=True)
def fresh(tiers: tuple[MockUpstream, ...]) -> None:
    for mock in tiers:
        mock.reset()


async def test_reserved_first_then_spot_then_on_demand_as_each_saturates(
    routers: list[Router], tiers: tuple[MockUpstream, MockUpstream, MockUpstream]
) -> None:
    od, spot, res = tiers
    for mock in tiers:
        mock.stall_s = 0.5  # keep replies in flight
    router = make(
        routers,
        upstream(od, tier="on-demand"),  # listed first: order comes from tiers, not the config
        upstream(spot, tier="spot", max_in_flight=1),
        upstream(res, tier="reserved", max_in_flight=2),
    )
    replies = await asyncio.gather(*(router.dispatch(MODEL, chat()) for _ in range(5)))
    assert sorted(r.upstream for r in replies) == ["od", "od", "res", "res", "spot"]
    assert {h.name: h.in_flight for h in router.health_snapshot()} == {"od": 2, "spot": 1, "res": 2}
    for reply in replies:
        await reply.aclose()
    assert all(h.in_flight == 0 for h in router.health_snapshot())


def test_spot_without_an_on_demand_fallback_is_refused(
    tiers: tuple[MockUpstream, MockUpstream, MockUpstream],
) -> None:
    _, spot, res = tiers
    with pytest.raises(ConfigError, match=r"spot upstreams \['spot'\] without an on-demand"):
        Router([upstream(res, tier="reserved"), upstream(spot, tier="spot")], RoutingSettings())


async def test_a_draining_upstream_gets_no_new_requests_but_finishes_its_own(
    routers: list[Router], tiers: tuple[MockUpstream, MockUpstream, MockUpstream]
) -> None:
    od, spot, _ = tiers
    router = make(routers, upstream(spot, tier="spot"), upstream(od, tier="on-demand"))
    spot.event_delay_s = 0.05
    in_flight = await router.dispatch(MODEL, chat(stream=True))
    assert in_flight.upstream == "spot"
    health = router.drain("spot")
    assert health.draining and not health.available
    assert (await router.dispatch(MODEL, chat())).upstream == "od"
    assert await text_of(in_flight) == spot.text  # the stream it had finishes whole
    router.drain("spot", draining=False)
    assert (await router.dispatch(MODEL, chat())).upstream == "spot"
    with pytest.raises(NotFoundError):
        router.drain("nope")
