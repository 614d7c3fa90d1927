from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from strata.errors import ConfigError, NotFoundError
from strata.gateway.dpa import check_dpa_coverage
from strata.gateway.identity import KeyInfo, KeySpec, TenantInfo
from strata.gateway.principal import Limits
from strata.gateway.runtime import GatewayRuntime
from tests.gateway.conftest import gateway_settings
from tests.support.mock_upstream import MockUpstream

NOW = datetime.now(UTC)
BANK = TenantInfo("bank", True, Limits(), NOW)
SHOP = TenantInfo("shop", False, Limits(), NOW)


def _key(key_id: str, tenant: str, models: tuple[str, ...] | None) -> KeyInfo:
    return KeyInfo(key_id, KeySpec(tenant, "u", models=models), NOW)


def _resolve(model: str) -> str:
    if model == "ghost":
        raise NotFoundError("no such model")
    return {"alias": "safe-model"}.get(model, model)


def test_tenants_without_the_requirement_need_nothing() -> None:
    check_dpa_coverage([SHOP], [_key("k1", "shop", ("cheap",))], set(), _resolve)


def test_a_dpa_tenant_with_no_dpa_upstream_at_all_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\['bank'\].*no upstream has `dpa: true`"):
        check_dpa_coverage([BANK, SHOP], [], set(), _resolve)


def test_a_key_scoped_only_to_non_dpa_models_is_refused() -> None:
    keys = [_key("ok1", "bank", ("alias",)), _key("bad1", "bank", ("cheap", "ghost"))]
    with pytest.raises(ConfigError, match=r"\['bad1'\]"):
        check_dpa_coverage([BANK], keys, {"safe-model"}, _resolve)
    check_dpa_coverage([BANK], [*keys[:1], _key("any", "bank", None)], {"safe-model"}, _resolve)


def test_the_gateway_refuses_to_start_when_a_dpa_tenant_cannot_be_served(
    pg_dsn: str, tmp_path: Path
) -> None:
    with MockUpstream("cheap") as cheap:
        settings = gateway_settings(pg_dsn, tmp_path, cheap)

        async def start_twice() -> None:
            first = GatewayRuntime(settings)
            await first.start()
            await first.keys.create_tenant("bank", require_dpa=True)
            await first.aclose()
            with pytest.raises(ConfigError, match="data-processing agreement"):
                await GatewayRuntime(settings).start()

        asyncio.run(start_twice())
