"""What the router believes each strata engine holds in its prefix cache, by block hash.

One `EngineView` per upstream, kept current by `KvFeed` from the engine's KV events
(`strata.engine.kv_events`): a reset replaces the view, a delta adds what was stored and drops
what was evicted. Between two reads the router also remembers what it has just sent each
engine (`predict`): blocks the engine is about to compute, counted as held until the engine
reports them or PREDICTION_TTL_S passes, so the next request of a conversation follows the
first even before the engine has said a word. A view is a belief: a predicted hit can turn out
a miss (the engine's own prefix-cache metrics tell the truth).

Times are `time.monotonic()` seconds, passed in by the callers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pydantic import TypeAdapter

from strata.engine.kv_events import KvEvents

KV_EVENTS = TypeAdapter(KvEvents)  # validates an engine's answer (`KvEvents` as JSON)
# Long enough to cover a queue wait and a prefill under load; a prediction whose request never
# ran (it failed over, it was refused) only misleads a few routing choices this long.
PREDICTION_TTL_S = 30.0


@dataclass
class EngineView:
    instance: str | None = None  # None until the first answer
    seq: int = 0
    block_size: int | None = None
    blocks: set[int] = field(default_factory=set)  # reported held
    predicted: dict[int, float] = field(default_factory=dict)  # sent there: hash -> until

    def apply(self, events: KvEvents, now: float) -> None:
        if events.reset or events.instance != self.instance:
            self.blocks = set(events.stored)
        else:
            self.blocks.update(events.stored)
            self.blocks.difference_update(events.evicted)
        self.instance, self.seq, self.block_size = events.instance, events.seq, events.block_size
        gone = set(events.evicted)
        self.predicted = {
            h: until
            for h, until in self.predicted.items()
            if until > now and h not in self.blocks and h not in gone
        }

    def predict(self, hashes: Sequence[int], until: float) -> None:
        """The engine was just sent a prompt with these blocks: count them held until `until`
        unless it reports them first."""
        for block_hash in hashes:
            if block_hash not in self.blocks:
                self.predicted[block_hash] = until

    def leading(self, hashes: Sequence[int], now: float) -> int:
        """How many of `hashes` (a prompt's chain, first block first) this engine holds, or
        was sent, before the first it lacks: the blocks it could serve from its cache."""
        held = 0
        for block_hash in hashes:
            if block_hash not in self.blocks and self.predicted.get(block_hash, 0.0) <= now:
                break
            held += 1
        return held


class KvIndex:
    """The views of every upstream read so far, by upstream name."""

    def __init__(self) -> None:
        self.views: dict[str, EngineView] = {}

    def view(self, name: str) -> EngineView:
        return self.views.setdefault(name, EngineView())

    def known(self, name: str) -> EngineView | None:
        """The view of `name` once its engine has answered (its block size is known)."""
        view = self.views.get(name)
        return view if view is not None and view.block_size is not None else None

    def keep_only(self, names: set[str]) -> None:
        """Forget upstreams that left the router (discovered replicas come and go)."""
        for name in self.views.keys() - names:
            del self.views[name]
