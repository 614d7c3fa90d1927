"""The start-up check that tenants requiring a data-processing agreement can be served.

A tenant marked `require_dpa` is only ever routed to upstreams with `dpa: true` (the router
enforces that per request). A configuration that would force its data elsewhere, or leave it
nothing at all, is refused here before the gateway accepts a request: a tenant whose keys may
only use models no DPA upstream serves, or tenants requiring a DPA when no upstream has one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from strata.errors import ConfigError, StrataError
from strata.gateway.identity import KeyInfo, TenantInfo

logger = logging.getLogger(__name__)


def check_dpa_coverage(
    tenants: Sequence[TenantInfo],
    keys: Sequence[KeyInfo],
    covered: set[str],
    resolve: Callable[[str], str],
) -> None:
    """Raise `ConfigError` naming the tenants and keys a DPA requirement leaves unserved."""
    strict = sorted(t.name for t in tenants if t.require_dpa)
    if not strict:
        return
    if not covered:
        raise ConfigError(
            f"Tenants {strict} require a data-processing agreement, but no upstream has "
            "`dpa: true`: mark the upstreams that have one, or lift require_dpa "
            "(strata tenants update NAME --no-require-dpa)."
        )
    stranded = [
        k.key_id for k in keys if k.spec.tenant in strict and _stranded(k, covered, resolve)
    ]
    if stranded:
        raise ConfigError(
            f"API keys {stranded} belong to tenants requiring a data-processing agreement but "
            f"may only use models no DPA upstream serves (models with one: {sorted(covered)}); "
            "add `dpa: true` upstreams for their models, or rescope or revoke the keys."
        )


def _stranded(key: KeyInfo, covered: set[str], resolve: Callable[[str], str]) -> bool:
    if key.spec.models is None or key.status(datetime.now(UTC)) != "active":
        return False
    return not any(_served(model, resolve) in covered for model in key.spec.models)


def _served(model: str, resolve: Callable[[str], str]) -> str:
    try:
        return resolve(model)
    except StrataError:
        return model  # a model nobody serves: not covered either
