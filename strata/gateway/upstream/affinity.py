"""`PrefixAffinity`: send a prompt to the strata engine that already caches its prefix.

It wraps another order policy (tiers keep deciding which upstreams may take the request) and
picks, among the *peers* (the available strata engines of the best open tier), the one to try
first:

    cached      the peer believed to hold the most leading blocks of the prompt (`KvIndex`:
                reported by the engine, or just sent there), if that is at least `min_match`
                of the prompt's blocks; ties go to the least busy
    new         no peer holds that much (a shared chat-template opening is not worth crowding
                one engine for): the least busy peer, "busy" being requests in flight,
                then the blocks it was recently sent to compute (`RecentWork`, so that new
                prefixes spread their cache footprint evenly), then rendezvous hashing of the
                prompt's first HOME_BLOCKS blocks (so that gateway replicas agree when all
                else is equal)
    overloaded  the engine chosen above is at its max_in_flight or has more than `margin`
                requests in flight beyond the least busy peer: the least busy peer instead
    unhashed    the prompt has no full block or cannot be hashed: the least busy peer

The chosen engine is then credited with the prompt's blocks (`EngineView.predict`), so the
next request of the same conversation or system prompt follows it before the engine reports
them. The other members follow in the inner policy's order, for failover. Each decision is
counted (`PrefixStats`): its outcome and the blocks it expects the engine to find cached.

Why not place new prefixes by consistent hashing alone: with few engines, hashing puts
unequal numbers of prefixes on each (3 of 4 on one replica is common), and the crowded
replica's cache thrashes while the other idles. Predictions give followers the same
co-location without that; a second gateway replica may place a brand-new prefix elsewhere
once, until the engines' reports reach it (one poll interval).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Literal

from strata.gateway.upstream.kv_index import PREDICTION_TTL_S, KvIndex
from strata.gateway.upstream.member import Member
from strata.gateway.upstream.policy import OrderPolicy
from strata.gateway.upstream.prompt_blocks import PromptHasher, PromptTokens
from strata.gateway.upstream.upstreams import UpstreamCall

logger = logging.getLogger(__name__)

HOME_BLOCKS = 4  # a new prefix's rendezvous key: its first 64 tokens at the default block size
WORK_HALF_LIFE_S = 30.0  # how fast an engine's recent work fades from `RecentWork`

Outcome = Literal["cached", "new", "overloaded", "unhashed"]
OUTCOMES: tuple[Outcome, ...] = ("cached", "new", "overloaded", "unhashed")


@dataclass(frozen=True)
class Scored:
    """One peer for one prompt: its cached leading blocks, the prompt's hashes for it, and the
    blocks it was recently sent to compute."""

    member: Member
    hits: int
    hashes: Sequence[int] | None  # None: the prompt cannot be hashed for this engine (yet)
    work: float = 0.0

    @property
    def busy(self) -> tuple[int, float]:
        return self.member.in_flight, self.work


@dataclass(frozen=True)
class Decision:
    member: Member
    outcome: Outcome
    hit_blocks: int  # blocks of the prompt `member` is believed to hold
    prompt_blocks: int  # blocks of the prompt an engine could serve from its cache


@dataclass
class PrefixStats:
    """Decisions so far, per upstream: by outcome, and blocks predicted cached / prompted."""

    decisions: Counter[tuple[str, Outcome]] = field(default_factory=Counter)
    hit_blocks: Counter[str] = field(default_factory=Counter)
    prompt_blocks: Counter[str] = field(default_factory=Counter)

    def record(self, decision: Decision) -> None:
        name = decision.member.name
        self.decisions[name, decision.outcome] += 1
        self.hit_blocks[name] += decision.hit_blocks
        self.prompt_blocks[name] += decision.prompt_blocks


class RecentWork:
    """Blocks each engine was sent to compute (prompt blocks it was not believed to hold),
    decayed with a half-life of `half_life_s`."""

    def __init__(self, half_life_s: float = WORK_HALF_LIFE_S) -> None:
        self.half_life_s = half_life_s
        self._work: dict[str, tuple[float, float]] = {}  # name -> (blocks, as of when)

    def of(self, name: str, now: float) -> float:
        blocks, then = self._work.get(name, (0.0, now))
        return blocks * math.exp2(-(now - then) / self.half_life_s)

    def add(self, name: str, blocks: int, now: float) -> None:
        self._work[name] = (self.of(name, now) + blocks, now)


class PrefixAffinity:
    """An `OrderPolicy` around `inner`; `hasher_of` says which members are strata engines."""

    def __init__(
        self,
        inner: OrderPolicy,
        index: KvIndex,
        hasher_of: Callable[[Member], PromptHasher | None],
        margin: int,
        stats: PrefixStats,
        min_match: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.index = index
        self.hasher_of = hasher_of
        self.margin = margin
        self.min_match = min_match
        self.stats = stats
        self.work = RecentWork()
        self.clock = clock

    async def order(self, members: Sequence[Member], call: UpstreamCall) -> Sequence[Member]:
        ordered = await self.inner.order(members, call)
        peers = self.peers(ordered)
        if len(peers) < 2:
            return ordered
        prompts = await asyncio.to_thread(self._tokenize_or_none, peers, call)
        now = self.clock()
        scored = [self._scored(m, prompts[m.name], now) for m in peers]
        decision = choose(scored, self.margin, self.min_match)
        self._remember(decision, scored, now)
        return [decision.member, *(m for m in ordered if m is not decision.member)]

    def peers(self, ordered: Sequence[Member]) -> list[Member]:
        """The available members of the first tier with an unsaturated one, in `ordered`'s
        order; none unless all of them are strata engines."""
        open_ = [m for m in ordered if m.available and not m.saturated]
        if not open_:
            return []
        peers = [m for m in ordered if m.available and m.tier == open_[0].tier]
        return peers if all(self.hasher_of(m) is not None for m in peers) else []

    def _tokenize_or_none(
        self, peers: Sequence[Member], call: UpstreamCall
    ) -> dict[str, PromptTokens | None]:
        """`_tokenize`, or no prompt at all if it fails: routing never fails a request."""
        try:
            return self._tokenize(peers, call)
        except Exception:
            logger.exception("hashing the prompt of request %s failed", call.request_id)
            return dict.fromkeys((m.name for m in peers), None)

    def _tokenize(
        self, peers: Sequence[Member], call: UpstreamCall
    ) -> dict[str, PromptTokens | None]:
        """Each peer's prompt tokens, tokenizing once per distinct tokenizer (in a thread)."""
        done: dict[int, PromptTokens | None] = {}
        prompts: dict[str, PromptTokens | None] = {}
        for member in peers:
            hasher = self.hasher_of(member)
            assert hasher is not None  # peers are strata engines
            if id(hasher) not in done:
                done[id(hasher)] = hasher.tokens(call.path, call.body)
            prompts[member.name] = done[id(hasher)]
        return prompts

    def _scored(self, member: Member, prompt: PromptTokens | None, now: float) -> Scored:
        work = self.work.of(member.name, now)
        view = self.index.known(member.name)
        if view is None or view.block_size is None or prompt is None:
            return Scored(member, 0, None, work)
        hashes = prompt.hashes(view.block_size)
        hits = 0 if hashes is None else view.leading(hashes, now)
        return Scored(member, hits, hashes, work)

    def _remember(self, decision: Decision, scored: Sequence[Scored], now: float) -> None:
        """Count the decision; credit the chosen engine with the prompt's blocks."""
        self.stats.record(decision)
        chosen = next(s for s in scored if s.member is decision.member)
        view = self.index.known(decision.member.name)
        if chosen.hashes and view is not None:
            view.predict(chosen.hashes, now + PREDICTION_TTL_S)
            self.work.add(decision.member.name, len(chosen.hashes) - chosen.hits, now)


def choose(scored: Sequence[Scored], margin: int, min_match: float = 0.0) -> Decision:
    """The peer to try first (see the module docstring). `scored` in the inner order, which
    breaks the remaining ties; at least one of them unsaturated."""
    least = min((s for s in scored if not s.member.saturated), key=lambda s: s.busy)
    hashed = [s for s in scored if s.hashes]
    if not hashed:
        return Decision(least.member, "unhashed", 0, 0)
    holders = [s for s in hashed if s.hits > 0 and s.hits >= min_match * len(s.hashes or ())]
    if holders:
        best = max(s.hits for s in holders)
        target = min((s for s in holders if s.hits == best), key=lambda s: s.busy)
        outcome: Outcome = "cached"
    else:
        target = min(hashed, key=lambda s: (*s.busy, -rendezvous(s)))
        outcome = "new"
    if _overloaded(target.member, least.member, margin):
        return Decision(least.member, "overloaded", least.hits, _blocks(least, target))
    return Decision(target.member, outcome, target.hits, _blocks(target, target))


def rendezvous(s: Scored) -> int:
    """The weight of peer `s` for its prompt's first HOME_BLOCKS blocks (highest wins): every
    gateway agrees, and a peer leaving moves only the prefixes it had."""
    assert s.hashes
    key = s.hashes[min(len(s.hashes), HOME_BLOCKS) - 1]
    digest = blake2b(f"{key}:{s.member.name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def _overloaded(member: Member, least: Member, margin: int) -> bool:
    return member.saturated or member.in_flight - least.in_flight > margin


def _blocks(chosen: Scored, fallback: Scored) -> int:
    hashes = chosen.hashes if chosen.hashes is not None else fallback.hashes
    return len(hashes) if hashes else 0
