"""Prefix affinity's choice: the engine holding the longest cached prefix, unless it is
overloaded; a new prefix on the least busy engine, its followers after it; tiers still decide
who may take the request."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, cast

import pytest

from strata.config import UpstreamSettings
from strata.engine.block_hash import prefix_hashes
from strata.engine.tokenizer import Tokenizer
from strata.gateway.upstream.affinity import (
    PrefixAffinity,
    PrefixStats,
    RecentWork,
    Scored,
    choose,
    rendezvous,
)
from strata.gateway.upstream.breaker import CircuitBreaker
from strata.gateway.upstream.kv_index import KvIndex
from strata.gateway.upstream.member import Member
from strata.gateway.upstream.policy import RoundRobin, TierOrder
from strata.gateway.upstream.prompt_blocks import PromptHasher, PromptTokens
from strata.gateway.upstream.upstreams import HttpUpstream, UpstreamCall

BLOCK = 4
SYSTEM = list(range(100, 124))  # 6 blocks shared by a "conversation family"


class IdsHasher(PromptHasher):
    """The prompt is the body's `ids` (the tokenizer is not under test here)."""

    def __init__(self) -> None:
        super().__init__(cast(Tokenizer, None))

    def tokens(self, path: str, body: Mapping[str, Any]) -> PromptTokens | None:
        ids = body.get("ids")
        return None if ids is None else PromptTokens(list(ids))


HASHER = IdsHasher()


def member(name: str, in_flight: int = 0, tier: str = "on-demand", **fields: Any) -> Member:
    settings = UpstreamSettings(name=name, url="http://127.0.0.1:9/v1", models=["m"],
                                tier=tier, engine_model="m", **fields)  # fmt: skip
    m = Member(HttpUpstream(settings), CircuitBreaker(5, 10.0))
    m.in_flight = in_flight
    return m


def hashes(ids: Sequence[int]) -> list[int]:
    return prefix_hashes(ids[:-1], BLOCK)


def scored(m: Member, ids: Sequence[int], held: int, work: float = 0.0) -> Scored:
    return Scored(m, held, hashes(ids), work)


def call(ids: Sequence[int] | None) -> UpstreamCall:
    body = {} if ids is None else {"ids": list(ids)}
    return UpstreamCall("/completions", body, False, "r", deadline=1e9)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def affinity(
    index: KvIndex,
    margin: int = 2,
    *,
    strata: bool = True,
    clock: Clock | None = None,
    min_match: float = 0.0,
) -> PrefixAffinity:
    return PrefixAffinity(TierOrder(), index, lambda m: HASHER if strata else None, margin,
                          PrefixStats(), min_match, clock or Clock())  # fmt: skip


def index_with(**held: Sequence[int]) -> KvIndex:
    """Each engine holding every full block of the given tokens (as after serving them)."""
    index = KvIndex()
    for name, ids in held.items():
        view = index.view(name)
        view.instance, view.block_size = "i", BLOCK
        view.blocks = set(prefix_hashes(ids, BLOCK))
    return index


# -- choose -----------------------------------------------------------------------------------


def test_the_engine_holding_the_longest_prefix_wins_and_ties_go_to_the_least_busy() -> None:
    a, b, c = member("a"), member("b", in_flight=1), member("c")
    prompt = [*SYSTEM, 1, 2, 3, 4, 5]
    decision = choose([scored(a, prompt, 2), scored(b, prompt, 6), scored(c, prompt, 0)], 4)
    assert decision.member is b and decision.outcome == "cached"
    assert decision.hit_blocks == 6 and decision.prompt_blocks == len(hashes(prompt)) == 7
    tie = choose([scored(b, prompt, 6), scored(a, prompt, 6)], 4)
    assert tie.member is a


def test_a_holder_of_less_than_the_minimum_match_is_no_holder() -> None:
    opening, idle = member("opening", in_flight=1), member("idle")
    prompt = [*SYSTEM, *range(1, 20)]  # 10 blocks; the opening engine holds the first 2
    peers = [scored(opening, prompt, 2), scored(idle, prompt, 0)]
    assert choose(peers, margin=4, min_match=0.0).member is opening
    placed = choose(peers, margin=4, min_match=0.5)
    assert placed.member is idle and placed.outcome == "new"
    assert choose([scored(opening, prompt, 5), scored(idle, prompt, 0)], 4, 0.5).member is opening


def test_an_overloaded_holder_is_passed_over_for_the_least_busy() -> None:
    holder, idle = member("holder", in_flight=5), member("idle", in_flight=2)
    prompt = [*SYSTEM, 7]
    at_margin = choose([scored(holder, prompt, 6), scored(idle, prompt, 0)], margin=3)
    assert at_margin.member is holder  # 5 - 2 = 3: not more than the margin
    over = choose([scored(holder, prompt, 6), scored(idle, prompt, 0)], margin=2)
    assert over.member is idle and over.outcome == "overloaded" and over.hit_blocks == 0


def test_a_holder_at_its_max_in_flight_is_overloaded_whatever_the_margin() -> None:
    holder, idle = member("holder", in_flight=2, max_in_flight=2), member("idle", in_flight=9)
    decision = choose([scored(holder, SYSTEM, 5), scored(idle, SYSTEM, 0)], margin=100)
    assert decision.member is idle and decision.outcome == "overloaded"


def test_a_new_prefix_goes_to_the_least_busy_then_least_recently_worked_engine() -> None:
    a, b, c = member("a", in_flight=2), member("b", in_flight=1), member("c", in_flight=1)
    prompt = [*SYSTEM, 1]
    peers = [scored(a, prompt, 0), scored(b, prompt, 0, work=9.0), scored(c, prompt, 0, work=3.0)]
    decision = choose(peers, margin=4)
    assert decision.member is c and decision.outcome == "new" and decision.hit_blocks == 0


def test_equally_busy_engines_split_new_prefixes_by_rendezvous_hashing() -> None:
    peers = [member(f"r{i}") for i in range(4)]
    homes = set()
    for family in range(12):
        start = [family * 50 + t for t in range(4 * BLOCK)]  # HOME_BLOCKS blocks decide
        first = choose([scored(m, [*start, 1, 2, 3, 4, 5, 6], 0) for m in peers], 4)
        later = choose([scored(m, [*start, 9, 9, 9, 9, 9, 9, 9, 9], 0) for m in reversed(peers)], 4)
        assert first.outcome == later.outcome == "new"
        assert first.member is later.member  # the same one whatever follows, in any order
        homes.add(first.member.name)
    assert len(homes) >= 3  # different prefixes spread over the peers


def test_rendezvous_moves_only_the_prefixes_of_a_peer_that_left() -> None:
    peers = [member(f"r{i}") for i in range(3)]
    prompts = [[f * 40 + t for t in range(20)] for f in range(30)]

    def home(among: Sequence[Member], prompt: list[int]) -> str:
        return max((scored(m, prompt, 0) for m in among), key=rendezvous).member.name

    before = [home(peers, p) for p in prompts]
    after = [home(peers[:2], p) for p in prompts]
    assert all(b == a for b, a in zip(before, after, strict=True) if b != "r2")


def test_recent_work_fades_by_half_each_half_life() -> None:
    work = RecentWork(half_life_s=10.0)
    work.add("a", 8, now=0.0)
    assert work.of("a", 0.0) == 8.0 and work.of("a", 10.0) == pytest.approx(4.0)
    work.add("a", 4, now=10.0)
    assert work.of("a", 20.0) == pytest.approx(4.0) and work.of("b", 20.0) == 0.0


def test_a_prompt_that_cannot_be_hashed_goes_to_the_least_busy() -> None:
    a, b = member("a", in_flight=3), member("b", in_flight=1)
    decision = choose([Scored(a, 0, None), Scored(b, 0, [])], 0)
    assert decision.member is b and decision.outcome == "unhashed" and decision.prompt_blocks == 0


# -- the policy -------------------------------------------------------------------------------


async def test_the_policy_puts_the_holder_first_and_keeps_the_rest_for_failover() -> None:
    a, b, c = member("a"), member("b"), member("c")
    prompt = [*SYSTEM, 5, 6, 7, 8, 9]
    policy = affinity(index_with(a=SYSTEM[:8], b=SYSTEM, c=[]))
    ordered = await policy.order([a, b, c], call(prompt))
    assert [m.name for m in ordered] == ["b", "a", "c"]
    assert policy.stats.decisions["b", "cached"] == 1 and policy.stats.hit_blocks["b"] == 6
    assert policy.work.of("b", 1000.0) == 1.0  # the one block it did not hold


async def test_followers_of_a_new_prefix_go_where_it_went_before_any_report() -> None:
    clock = Clock()
    a, b = member("a"), member("b")
    policy = affinity(index_with(a=[], b=[]), clock=clock)
    first = (await policy.order([a, b], call([*SYSTEM, 1, 2])))[0]
    assert policy.stats.decisions[first.name, "new"] == 1
    for follower in ([*SYSTEM, 3, 4], [*SYSTEM, 1, 2, 5, 6, 7, 8]):
        assert (await policy.order([a, b], call(follower)))[0] is first
    assert policy.stats.decisions[first.name, "cached"] == 2
    other = (await policy.order([a, b], call(list(range(500, 530)))))[0]
    assert other is not first  # a different prefix: the engine with less recent work
    clock.now += 31  # the predictions lapse unless the engine reports the blocks
    assert policy.index.views[first.name].leading(hashes([*SYSTEM, 1]), clock.now) == 0


async def test_tiers_come_first_a_cheaper_tier_wins_over_a_cached_prefix() -> None:
    reserved1, reserved2 = member("res1", tier="reserved"), member("res2", tier="reserved")
    on_demand = member("od")
    policy = affinity(index_with(od=SYSTEM, res2=SYSTEM[:4], res1=[]))
    ordered = await policy.order([on_demand, reserved1, reserved2], call([*SYSTEM, 1]))
    assert [m.name for m in ordered] == ["res2", "res1", "od"]
    # both reserved saturated: the on-demand peers are the ones to choose among
    reserved1.upstream.settings.max_in_flight = reserved2.upstream.settings.max_in_flight = 1
    reserved1.in_flight = reserved2.in_flight = 1
    ordered = await policy.order([on_demand, reserved1, reserved2], call([*SYSTEM, 1]))
    assert ordered[0].name == "od"


async def test_groups_that_are_not_all_strata_engines_keep_the_inner_order() -> None:
    a, b = member("a", in_flight=1), member("b")
    policy = affinity(index_with(a=SYSTEM, b=[]), strata=False)
    assert [m.name for m in await policy.order([a, b], call(SYSTEM))] == ["b", "a"]
    assert not policy.stats.decisions


async def test_unavailable_engines_are_not_chosen() -> None:
    a, b, c = member("a"), member("b"), member("c")
    a.healthy = False
    policy = affinity(index_with(a=SYSTEM, b=[], c=SYSTEM[:8]))
    ordered = await policy.order([a, b, c], call(SYSTEM))
    assert ordered[0].name == "c" and {m.name for m in ordered} == {"a", "b", "c"}
    c.draining = True  # one peer left: nothing to choose, the inner order stands
    assert [m.name for m in await policy.order([a, b, c], call(SYSTEM))] == ["a", "b", "c"]


async def test_engines_not_heard_from_yet_count_as_holding_nothing() -> None:
    a, b = member("a"), member("b", in_flight=1)
    policy = affinity(KvIndex())
    ordered = await policy.order([a, b], call(SYSTEM))
    assert ordered[0].name == "a"
    assert policy.stats.decisions["a", "unhashed"] == 1


async def test_a_hasher_that_breaks_never_fails_the_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(IdsHasher):
        def tokens(self, path: str, body: Mapping[str, Any]) -> PromptTokens | None:
            raise RuntimeError("a bug")

    a, b = member("a", in_flight=1), member("b")
    policy = PrefixAffinity(TierOrder(), index_with(a=SYSTEM, b=[]), lambda m: Broken(), 2,
                            PrefixStats(), clock=Clock())  # fmt: skip
    ordered = await policy.order([a, b], call(SYSTEM))
    assert ordered[0].name == "b" and policy.stats.decisions["b", "unhashed"] == 1
    assert "hashing the prompt of request r failed" in caplog.text


async def test_round_robin_takes_each_member_in_turn_per_group() -> None:
    a, b, c = member("a"), member("b"), member("c")
    rr = RoundRobin()
    firsts = [(await rr.order([a, b, c], call(None)))[0].name for _ in range(4)]
    assert firsts == ["a", "b", "c", "a"]
    assert [m.name for m in await rr.order([a, b], call(None))] == ["a", "b"]
    assert await rr.order([], call(None)) == []


@pytest.mark.parametrize("margin", [0, 3])
async def test_many_concurrent_orders_see_a_consistent_choice(margin: int) -> None:
    a, b = member("a"), member("b")
    policy = affinity(index_with(a=SYSTEM, b=[]), margin=margin)
    orders = await asyncio.gather(*(policy.order([a, b], call([*SYSTEM, i])) for i in range(8)))
    assert {o[0].name for o in orders} == {"a"}
