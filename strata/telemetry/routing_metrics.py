"""Prefix-aware routing's metrics, read at scrape time from a snapshot callable.

    strata:routing_prefix_decisions_total{upstream, outcome}   how each request was placed:
        cached (the engine holding most of its prefix), new (no engine holds any of it: placed
        by hash so its followers meet it), overloaded (the engine it should go to was too busy:
        the least busy took it), unhashed (too short or not hashable: the least busy)
    strata:routing_prefix_hit_blocks_total{upstream}      blocks the router expected cached
    strata:routing_prefix_prompt_blocks_total{upstream}   cacheable blocks of those prompts
    strata:routing_prefix_index_blocks{upstream}          blocks it believes the engine holds

hit / prompt blocks is the router's predicted prefix-hit rate; compare it with the engines'
`strata:prefix_cache_hits_total / strata:prefix_cache_queries_total` (what they found).
This module knows no gateway types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from strata.telemetry.engine_metrics import PREFIX


class UpstreamPrefixLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def decisions(self) -> Mapping[str, int]: ...
    @property
    def hit_blocks(self) -> int: ...
    @property
    def prompt_blocks(self) -> int: ...
    @property
    def index_blocks(self) -> int: ...


class PrefixRoutingCollector:
    def __init__(self, snapshot: Callable[[], Sequence[UpstreamPrefixLike]]) -> None:
        self._snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        name = PREFIX + "routing_prefix_"
        decisions = CounterMetricFamily(name + "decisions", "Requests placed by prefix-aware "
                                        "routing, by upstream and outcome.",
                                        labels=["upstream", "outcome"])  # fmt: skip
        hits = CounterMetricFamily(name + "hit_blocks", "KV blocks the router expected the "
                                   "upstream to find cached.", labels=["upstream"])  # fmt: skip
        prompts = CounterMetricFamily(name + "prompt_blocks", "Cacheable KV blocks of the "
                                      "prompts routed to the upstream.",
                                      labels=["upstream"])  # fmt: skip
        index = GaugeMetricFamily(name + "index_blocks", "KV blocks the router believes the "
                                  "upstream holds.", labels=["upstream"])  # fmt: skip
        for up in self._snapshot():
            for outcome, count in up.decisions.items():
                decisions.add_metric([up.name, outcome], count)
            hits.add_metric([up.name], up.hit_blocks)
            prompts.add_metric([up.name], up.prompt_blocks)
            index.add_metric([up.name], up.index_blocks)
        return [decisions, hits, prompts, index]
