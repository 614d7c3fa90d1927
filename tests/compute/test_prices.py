"""The `pricing` settings the capacity planner reads: GPU-hour prices per tier."""

from __future__ import annotations

import subprocess
import sys

import pytest

from strata.config import DEFAULT_GPU_HOUR_USD, PricingSettings, load_settings
from strata.errors import ConfigError


def test_defaults_sit_in_the_seeds_bands() -> None:
    """On-demand 40-60% above a one-year reservation; spot saving up to 70%."""
    for name, price in PricingSettings().gpu_hour_usd.items():
        assert 1.4 <= price.on_demand / price.reserved <= 1.6, name
        assert price.spot is not None and 0.5 <= 1 - price.spot / price.on_demand <= 0.7, name
    assert set(DEFAULT_GPU_HOUR_USD) == {"l4", "a10g", "a100-40gb", "a100-80gb", "h100-80gb",
                                         "h200"}  # fmt: skip
    assert PricingSettings().reserved_term_months == 12


def test_configured_entries_merge_over_the_defaults() -> None:
    pricing = PricingSettings.model_validate(
        {"gpu_hour_usd": {"A100-80GB": {"spot": 1.5}, "mi300x": {"reserved": 2, "on_demand": 3}}}
    )
    a100 = pricing.gpu_hour_usd["a100-80gb"]
    assert (a100.reserved, a100.on_demand, a100.spot) == (3.41, 5.12, 1.5)
    assert pricing.gpu_hour_usd["mi300x"].spot is None
    assert "h100-80gb" in pricing.gpu_hour_usd


def test_a_reservation_dearer_than_on_demand_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"pricing\.gpu_hour_usd\.l4: .*reserved \(5\.0\)"):
        load_settings(pricing={"gpu_hour_usd": {"l4": {"reserved": 5}}})
    with pytest.raises(ConfigError, match=r"pricing\.spot_preemptions_per_hour"):
        load_settings(pricing={"spot_preemptions_per_hour": -1})


def test_the_plan_commands_import_neither_torch_nor_matplotlib() -> None:
    """`strata --help` imports the plan app: it must stay light."""
    code = ("import sys, strata.compute.commands; "
            "print(sorted({'torch', 'matplotlib', 'psycopg'} & set(sys.modules)))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
