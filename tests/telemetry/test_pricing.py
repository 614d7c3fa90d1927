from __future__ import annotations

from typing import Any

import pytest

from strata.config import ModelPrice, PricingSettings, UpstreamSettings
from strata.telemetry.pricing import PriceTable, gpu_hour_price


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


def self_hosted(name: str = "gpu-a", tier: str = "on-demand", gpu: str | None = "h200") -> Any:
    return UpstreamSettings(name=name, url="http://10.0.0.5:8401/v1", tier=tier, gpu=gpu)


def test_a_self_hosted_request_costs_its_replica_seconds_at_its_tiers_gpu_hour_price() -> None:
    pricing = PricingSettings(
        default=ModelPrice(input_per_mtok=1.0, output_per_mtok=1.0),
        gpu_hour_usd={"h200": {"reserved": 3.6, "on_demand": 7.2, "spot": 1.8}},
    )
    upstreams = [self_hosted("od"), self_hosted("res", "reserved"), self_hosted("spot", "spot"),
                 self_hosted("api", gpu=None)]  # fmt: skip
    table = PriceTable(pricing, upstreams)
    assert table.replica_second_price("od") == pytest.approx(7.2 / 3600)
    assert table.cost("m", 10, 10, upstream="od", replica_seconds=2.0) == pytest.approx(0.004)
    assert table.cost("m", 10, 10, upstream="res", replica_seconds=2.0) == pytest.approx(0.002)
    assert table.cost("m", 10, 10, upstream="spot", replica_seconds=2.0) == pytest.approx(0.001)
    # Per-token prices for API upstreams, and when a self-hosted answer carried no seconds.
    assert table.replica_second_price("api") is None
    assert table.cost("m", 10, 10, upstream="api", replica_seconds=2.0) == pytest.approx(2e-5)
    assert table.cost("m", 10, 10, upstream="od") == pytest.approx(2e-5)
    assert table.self_hosted() == pytest.approx({"od": 0.002, "res": 0.001, "spot": 0.0005})


def test_gpu_names_match_the_price_table_case_insensitively() -> None:
    pricing = PricingSettings(gpu_hour_usd={"MyGPU": {"reserved": 1.0, "on_demand": 2.0}})
    assert gpu_hour_price(self_hosted(gpu="mygpu"), pricing) == 2.0
    assert gpu_hour_price(self_hosted(gpu="L4", tier="reserved"), pricing) == pytest.approx(0.53)
    assert gpu_hour_price(self_hosted(gpu=None), pricing) is None
