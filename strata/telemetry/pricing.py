"""What tokens cost: the one price table (`pricing` in the settings) that the gateway's budgets,
the cost metrics and the capacity planner all read. Amounts are US dollars."""

from __future__ import annotations

from dataclasses import dataclass

from strata.config import ModelPrice, PricingSettings

PER_MILLION = 1_000_000


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
    """Prices by served model name; models not listed use the table's default."""

    def __init__(self, settings: PricingSettings) -> None:
        self._default = _price(settings.default)
        self._by_model = {name: _price(p) for name, p in settings.models.items()}

    def price(self, model: str) -> Price:
        return self._by_model.get(model, self._default)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        return self.price(model).cost(prompt_tokens, completion_tokens)


def _price(setting: ModelPrice) -> Price:
    return Price(setting.input_per_mtok, setting.output_per_mtok)
