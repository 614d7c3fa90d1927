from __future__ import annotations

from dataclasses import fields

from strata.gateway.limits.meters import METERS, ceiling, micros_to_usd, usd_to_micros
from strata.gateway.principal import Limits


def test_every_limit_has_exactly_one_meter() -> None:
    assert sorted(m.field for m in METERS) == sorted(f.name for f in fields(Limits))
    assert len({m.name for m in METERS}) == len(METERS)


def test_money_is_whole_micro_dollars() -> None:
    # In floats 0.1 + 0.2 is 0.30000000000000004, which a $0.30 budget would refuse.
    assert usd_to_micros(0.1) + usd_to_micros(0.2) == usd_to_micros(0.3)
    assert usd_to_micros(1.5) == 1_500_000
    assert micros_to_usd(125) == 0.000125


def test_ceiling_converts_only_cost_limits() -> None:
    by_field = {m.field: m for m in METERS}
    assert ceiling(by_field["daily_cost_usd"], 2.5) == 2_500_000
    assert ceiling(by_field["tpm"], 1000) == 1000
