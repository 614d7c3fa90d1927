"""Which tenants are logged: the setting in the store, and the gateway's copy of it.

A tenant is logged only after an admin opts it in (`strata logs enable`, `PUT
/admin/logging/{tenant}`); each change is audited in the same transaction. The gateway reads
the opted-in set once at start and every `request_logs.refresh_s` after, so the hot path asks
memory only: a change through this gateway applies at once, one through another replica or
the CLI within `refresh_s`. A failed refresh keeps the last known set.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from strata.background import stop
from strata.errors import InvalidRequestError, NotFoundError
from strata.store.database import Pool

logger = logging.getLogger(__name__)
MAX_RETENTION_DAYS = 3650


@dataclass(frozen=True)
class TenantLogging:
    """One tenant's request-log setting; `retention_days` None: the configured default."""

    tenant: str
    enabled: bool
    retention_days: int | None
    updated_at: datetime | None  # None: never set (the tenant is not logged)


async def list_settings(pool: Pool) -> list[TenantLogging]:
    """Every tenant that has a setting, by name."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_COLUMNS} FROM request_log_tenants ORDER BY tenant")
        return [_setting(r) for r in await cur.fetchall()]


async def get_setting(pool: Pool, tenant: str) -> TenantLogging:
    """The tenant's setting (off when never set); 404 for an unknown tenant."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await _check_tenant(cur, tenant)
        await cur.execute(
            f"SELECT {_COLUMNS} FROM request_log_tenants WHERE tenant = %s", (tenant,)
        )
        row = await cur.fetchone()
    return _setting(row) if row else TenantLogging(tenant, False, None, None)


async def set_setting(
    pool: Pool, tenant: str, enabled: bool, retention_days: int | None, *, actor: str
) -> TenantLogging:
    """Turn logging on or off for `tenant` (and set its retention), audited as
    `request_logs.enable` / `request_logs.disable`; 404 for an unknown tenant."""
    check_retention(retention_days)
    async with (
        pool.connection() as conn,
        conn.transaction(),
        conn.cursor(row_factory=dict_row) as cur,
    ):
        await _check_tenant(cur, tenant)
        await cur.execute(_UPSERT_SQL, (tenant, enabled, retention_days))
        row = await cur.fetchone()
        assert row is not None
        action = "request_logs.enable" if enabled else "request_logs.disable"
        detail = {"retention_days": retention_days}
        await cur.execute(
            "INSERT INTO audit_log (actor, action, target, detail) VALUES (%s, %s, %s, %s)",
            (actor, action, tenant, Jsonb(detail)),
        )
    return _setting(row)


def check_retention(days: int | None) -> None:
    if days is not None and not 1 <= days <= MAX_RETENTION_DAYS:
        raise InvalidRequestError(
            f"retention_days must be 1-{MAX_RETENTION_DAYS}, or unset for the configured "
            f"default (got {days}).",
            param="retention_days",
        )


async def enabled_tenants(pool: Pool) -> frozenset[str]:
    async with pool.connection() as conn:
        cursor = await conn.execute("SELECT tenant FROM request_log_tenants WHERE enabled")
        return frozenset(row[0] for row in await cursor.fetchall())


_COLUMNS = "tenant, enabled, retention_days, updated_at"
_UPSERT_SQL = f"""
INSERT INTO request_log_tenants (tenant, enabled, retention_days) VALUES (%s, %s, %s)
ON CONFLICT (tenant) DO UPDATE
    SET enabled = EXCLUDED.enabled, retention_days = EXCLUDED.retention_days, updated_at = now()
RETURNING {_COLUMNS}
"""


async def _check_tenant(cur: AsyncCursor[DictRow], tenant: str) -> None:
    await cur.execute("SELECT 1 FROM tenants WHERE name = %s", (tenant,))
    if await cur.fetchone() is None:
        raise NotFoundError(
            f"No tenant {tenant!r}; `strata tenants list` shows them.",
            code="tenant_not_found",
            param="tenant",
        )


def _setting(row: Mapping[str, Any]) -> TenantLogging:
    return TenantLogging(row["tenant"], row["enabled"], row["retention_days"], row["updated_at"])


class LoggedTenants:
    """The opted-in tenants, in memory; `in` is what the hot path asks."""

    def __init__(self, pool: Pool, refresh_s: float) -> None:
        self._pool = pool
        self._refresh_s = refresh_s
        self._enabled: frozenset[str] = frozenset()
        self._task: asyncio.Task[None] | None = None

    def __contains__(self, tenant: object) -> bool:
        return tenant in self._enabled

    def changed(self, setting: TenantLogging) -> None:
        """Apply a change made through this process at once."""
        if setting.enabled:
            self._enabled = self._enabled | {setting.tenant}
        else:
            self._enabled = self._enabled - {setting.tenant}

    async def refresh(self) -> None:
        self._enabled = await enabled_tenants(self._pool)

    async def start(self) -> None:
        """Read the set now (raising what the store raises), then every `refresh_s`."""
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="request-log-tenants")

    async def aclose(self) -> None:
        await stop(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                await self.refresh()
            except Exception as exc:  # keep the last known set; the store may come back
                logger.warning("request logs: could not re-read the logged tenants: %s", exc)
