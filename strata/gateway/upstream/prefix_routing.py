"""Prefix-aware routing's parts, assembled from the settings and run with the router.

    hashers   one `PromptHasher` per engine model (`upstreams[].engine_model`, and
              `engine.model` for the built-in engine): which members are strata engines
    index     what each engine is believed to cache (`KvIndex`), kept by `KvFeed`
    policy    `PrefixAffinity` around the router's order policy
    stats     its decisions, for `/metrics` (`snapshot`)

Off when `routing.prefix_affinity` is false or no upstream names an `engine_model` (a gateway
with only its built-in engine has nobody to choose between): then `around` returns the policy
it is given, nothing is loaded and nothing runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from strata.config import RoutingSettings, Settings
from strata.gateway.upstream.affinity import OUTCOMES, PrefixAffinity, PrefixStats
from strata.gateway.upstream.kv_feed import KvFeed
from strata.gateway.upstream.kv_index import KvIndex
from strata.gateway.upstream.member import Member
from strata.gateway.upstream.policy import OrderPolicy
from strata.gateway.upstream.prompt_blocks import BUNDLED, PromptHasher, load_hashers, spec_key


@dataclass(frozen=True)
class UpstreamPrefixStats:
    """One upstream's prefix-routing counts, for `strata.telemetry.routing_metrics`."""

    name: str
    decisions: Mapping[str, int]  # by outcome (`affinity.OUTCOMES`)
    hit_blocks: int  # blocks the router expected the engine to find cached
    prompt_blocks: int  # cacheable blocks of the prompts it sent there
    index_blocks: int  # blocks the router believes the engine holds now


class PrefixRouting:
    def __init__(
        self,
        routing: RoutingSettings,
        hashers: Mapping[str, PromptHasher],
        builtin_model: str | None = None,
    ) -> None:
        self.hashers = dict(hashers) if routing.prefix_affinity else {}
        self.builtin_key = spec_key(builtin_model)
        self.margin = routing.prefix_overload_margin
        self.min_match = routing.prefix_min_match
        self.interval_s = routing.kv_poll_interval_s
        self.index = KvIndex()
        self.stats = PrefixStats()
        self._feed: KvFeed | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> PrefixRouting:
        """Loads a tokenizer per engine model named (`ConfigError` when one cannot load)."""
        routing = settings.routing
        specs = [u.engine_model for u in settings.upstreams if u.engine_model is not None]
        if not routing.prefix_affinity or not specs:
            return cls(routing, {})
        if settings.gateway.engine:
            specs.append(settings.engine.model or BUNDLED)
        hashers = load_hashers(specs, settings.model_cache_dir)
        return cls(routing, hashers, settings.engine.model)

    @property
    def enabled(self) -> bool:
        return bool(self.hashers)

    def hasher_of(self, member: Member) -> PromptHasher | None:
        """The hasher of `member`'s engine model; None when it is not a strata engine."""
        settings = member.upstream.settings
        spec = self.builtin_key if settings.kind == "engine" else settings.engine_model
        return None if spec is None else self.hashers.get(spec_key(spec))

    def around(self, inner: OrderPolicy) -> OrderPolicy:
        if not self.enabled:
            return inner
        return PrefixAffinity(
            inner, self.index, self.hasher_of, self.margin, self.stats, self.min_match
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, members: Callable[[], Sequence[Member]]) -> None:
        """Start reading the KV events of the strata engines among `members()`."""
        if not self.enabled:
            return

        def engines() -> list[Member]:
            return [m for m in members() if self.hasher_of(m) is not None]

        self._feed = KvFeed(self.index, engines, self.interval_s)
        self._feed.start()

    async def aclose(self) -> None:
        if self._feed is not None:
            await self._feed.aclose()
            self._feed = None

    async def refresh(self) -> None:
        """Read every engine's KV events now (tests and benchmarks wait on this)."""
        if self._feed is not None:
            await self._feed.refresh()

    # -- metrics -----------------------------------------------------------------------------

    def snapshot(self) -> list[UpstreamPrefixStats]:
        names = {name for name, _ in self.stats.decisions} | set(self.index.views)
        return [self._stats_of(name) for name in sorted(names)]

    def _stats_of(self, name: str) -> UpstreamPrefixStats:
        view = self.index.views.get(name)
        return UpstreamPrefixStats(
            name,
            {o: self.stats.decisions[name, o] for o in OUTCOMES},
            self.stats.hit_blocks[name],
            self.stats.prompt_blocks[name],
            0 if view is None else len(view.blocks),
        )
