"""What requests cost: the one price table (`pricing` in the settings) that the gateway's budgets,
the cost metrics and the capacity planner all read. Amounts are US dollars.

Two ways to price a request. On an API upstream, by tokens: `pricing.models` per million prompt
and completion tokens. On a self-hosted upstream (one with a `gpu`), by replica time: the
seconds of the replica the engine billed the request (`usage.strata_replica_seconds`, see
`strata.engine.accounting`) times the GPU-hour price of the upstream's tier / 3600. A
self-hosted answer without replica seconds (not a strata engine, or a stream cut short) falls
back to the token price.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from strata.config import ModelPrice, PricingSettings, UpstreamSettings

PER_MILLION = 1_000_000
SECONDS_PER_HOUR = 3600


@dataclass(frozen=True)
class Price:
    """USD per million prompt and completion tokens for one model."""

    input_per_mtok: float
    output_per_mtok: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (
            prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok
        ) / PER_MILLION


class PriceTable:
    """Prices by served model name (models not listed use the table's default) and, for the
    self-hosted `upstreams`, by replica-second."""

    def __init__(
        self, settings: PricingSettings, upstreams: Iterable[UpstreamSettings] = ()
    ) -> None:
        self._default = _price(settings.default)
        self._by_model = {name: _price(p) for name, p in settings.models.items()}
        self._per_replica_s = {
            u.name: hourly / SECONDS_PER_HOUR
            for u in upstreams
            if (hourly := gpu_hour_price(u, settings)) is not None
        }

    def price(self, model: str) -> Price:
        return self._by_model.get(model, self._default)

    def replica_second_price(self, upstream: str) -> float | None:
        """USD per replica-second of a self-hosted upstream; None for any other."""
        return self._per_replica_s.get(upstream)

    def self_hosted(self) -> dict[str, float]:
        """USD per replica-second of each self-hosted upstream, by name."""
        return dict(self._per_replica_s)

    def cost(
        self,
        model: str,
        prompt_tokens: int,
        completion_tokens: int,
        *,
        upstream: str = "",
        replica_seconds: float | None = None,
    ) -> float:
        """What a request cost: by replica time when `upstream` is self-hosted and the engine
        reported `replica_seconds`, else by tokens."""
        per_second = self._per_replica_s.get(upstream)
        if per_second is not None and replica_seconds is not None:
            return replica_seconds * per_second
        return self.price(model).cost(prompt_tokens, completion_tokens)


def gpu_hour_price(upstream: UpstreamSettings, pricing: PricingSettings) -> float | None:
    """USD per GPU-hour of a self-hosted upstream at its tier; None when it has no `gpu`
    (the settings check that the entry and, for spot, its spot price exist)."""
    if upstream.gpu is None:
        return None
    entry = pricing.gpu_hour_usd[upstream.gpu.lower()]
    by_tier = {"reserved": entry.reserved, "on-demand": entry.on_demand, "spot": entry.spot}
    return by_tier[upstream.tier]


def _price(setting: ModelPrice) -> Price:
    return Price(setting.input_per_mtok, setting.output_per_mtok)
