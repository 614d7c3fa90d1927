from __future__ import annotations

import pytest

from strata.config import ModelPrice, PricingSettings
from strata.telemetry.pricing import PriceTable


def test_listed_models_use_their_price_and_others_the_default() -> None:
    table = PriceTable(
        PricingSettings(
            models={"big": ModelPrice(input_per_mtok=3.0, output_per_mtok=15.0)},
            default=ModelPrice(input_per_mtok=0.1, output_per_mtok=0.2),
        )
    )
    assert table.cost("big", 1_000_000, 0) == pytest.approx(3.0)
    assert table.cost("big", 1000, 2000) == pytest.approx(0.003 + 0.03)
    assert table.cost("other", 1_000_000, 1_000_000) == pytest.approx(0.3)
