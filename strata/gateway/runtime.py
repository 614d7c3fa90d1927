"""Everything `strata serve` runs, built from one `Settings` and started and stopped in order.

Start: the store (embedded PostgreSQL or a DSN, migrations) → keys (and the first admin key,
printed once) → the usage ledger → the limiter, seeded from the ledger's day and month →
the built-in engine (when `gateway.engine`) → the router with its health checks. Stop runs the
same list backwards, so the ledger's last rows are written before the store goes away.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import generate_latest

from strata.config import Settings
from strata.engine.engine import Engine
from strata.errors import StrataError
from strata.gateway.admin_api import admin_router
from strata.gateway.auth import Authenticator
from strata.gateway.dpa import check_dpa_coverage
from strata.gateway.guard_step import GuardStep
from strata.gateway.identity import IssuedKey, KeyStore
from strata.gateway.ledger import LedgerWriter, period_starts, period_usage
from strata.gateway.limits import Limiter, SeedEntry, build_limiter
from strata.gateway.pipeline import Gateway, GatewayParts
from strata.gateway.retrieval import RetrievalRoutes, lazy_embedder, search_for
from strata.gateway.upstream import EngineBinding, Router
from strata.guard import Canary, Guard
from strata.pipeline import METRICS as PIPELINE_METRICS
from strata.pipeline.service import PipelineService
from strata.secret_files import read_or_create_secret
from strata.store.database import Database, Pool
from strata.telemetry.engine_metrics import CONTENT_TYPE, EngineMetrics
from strata.telemetry.gateway_metrics import GatewayMetrics
from strata.telemetry.pricing import PriceTable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinEngine:
    """The in-process engine and its internal HTTP app (served to the router, never public)."""

    engine: Engine
    app: Any  # the ASGI app from strata.engine.server.build_engine_app
    token: str
    metrics: EngineMetrics  # what that app records, scraped by the gateway's /metrics


def _settle_the_heap() -> None:
    """Move everything start-up allocated (the model, modules, settings) out of the garbage
    collector's view, so its full collections scan only what requests allocate: a full pass
    over a large start-up heap is a multi-millisecond pause that lands on some request's p99."""
    gc.collect()
    gc.freeze()


class GatewayRuntime:
    """The running gateway's parts; `lifespan` starts and stops them around the HTTP server."""

    def __init__(
        self,
        settings: Settings,
        engine: BuiltinEngine | None = None,
        on_bootstrap_key: Callable[[IssuedKey], None] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self._on_bootstrap_key = on_bootstrap_key
        self._stack = AsyncExitStack()
        self.database = Database(settings)
        self._engine_metrics = engine.metrics if engine else None

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        try:
            await self.start()
        except StrataError as exc:
            logger.error("strata cannot start: %s", exc.message)
            raise
        try:
            yield
        finally:
            await self.aclose()

    async def start(self) -> None:
        try:
            await self._start_store()
            await self._start_limits()
            await self._start_engine()
            await self._start_router()
            embedder = lazy_embedder(self.settings)
            search = search_for(self.settings, self.pool, embedder)
            self.gateway_metrics = GatewayMetrics(
                self.settings.telemetry.tenant_labels, self.router.health_snapshot
            )
            guard = self._guard_step()
            self.gateway = Gateway(
                GatewayParts(self.settings, self.auth, self.limiter, self.router, self.ledger,
                             PriceTable(self.settings.pricing), search, self.gateway_metrics,
                             guard)
            )  # fmt: skip
            self.retrieval = RetrievalRoutes(self.settings, self.gateway, self.pool, embedder)
            await self._start_pipeline()
        except BaseException:
            await self.aclose()
            raise
        _settle_the_heap()

    async def aclose(self) -> None:
        await self._stack.aclose()

    async def _start_store(self) -> None:
        self.pool: Pool = await self.database.open()
        self._stack.push_async_callback(self.database.close)
        self.keys = KeyStore(self.pool)
        self.auth = Authenticator(self.keys, ttl_s=self.settings.gateway.key_cache_s)
        issued = await self.keys.ensure_bootstrap_admin()
        if issued is not None and self._on_bootstrap_key is not None:
            self._on_bootstrap_key(issued)
        flush_s = self.settings.gateway.ledger_flush_ms / 1000
        self.ledger = LedgerWriter(self.pool, flush_interval_s=flush_s)
        self.ledger.start()
        self._stack.push_async_callback(self.ledger.aclose)

    async def _start_limits(self) -> None:
        self.limiter: Limiter = build_limiter(self.settings)
        self._stack.push_async_callback(self.limiter.aclose)
        day, month = period_starts()
        used = await period_usage(self.pool, day, month)
        await self.limiter.seed(
            SeedEntry(u.kind, u.id, u.day_tokens, u.day_cost_usd, u.month_tokens,
                      u.month_cost_usd)
            for u in used
        )  # fmt: skip

    async def _start_engine(self) -> None:
        if self.engine is None:
            return
        await self.engine.engine.start()
        self._stack.push_async_callback(self.engine.engine.stop)

    async def _start_router(self) -> None:
        binding = None
        if (builtin := self.engine) is not None:
            binding = EngineBinding(builtin.app, builtin.token, builtin.engine.model_name)
        self.router = Router.from_settings(self.settings, engine=binding)
        check_dpa_coverage(
            await self.keys.list_tenants(),
            await self.keys.list_keys(),
            self.router.models_with_dpa(),
            self.router.resolve,
        )
        await self.router.start()
        self._stack.push_async_callback(self.router.aclose)

    def _guard_step(self) -> GuardStep | None:
        """The guard, its canary derived from this deployment's secret (made once, 0600)."""
        if not self.settings.guard.enabled:
            return None
        secret = read_or_create_secret(self.settings.guard_secret_file)
        self.canary = Canary.derive(secret)
        return GuardStep(self.settings.guard, Guard(canary=self.canary))

    async def _start_pipeline(self) -> None:
        """Stream every configured CDC source into the index, in this process."""
        if not self.settings.pipeline.sources:
            return
        embedder = await self.retrieval.embedder.get()
        service = PipelineService(self.settings, self.database.conninfo, embedder)
        await asyncio.to_thread(service.start)
        self._stack.push_async_callback(asyncio.to_thread, service.stop)

    def admin_router(self) -> APIRouter:
        return admin_router(self)

    async def readiness(self) -> dict[str, Any]:
        """Ready when the store answers and every model has an available upstream."""
        snapshot = self.router.health_snapshot()
        store_ok = await self._store_ok()
        served = {model for h in snapshot for model in h.models}
        covered = {model for h in snapshot if h.available for model in h.models}
        upstreams = [{**asdict(h), "available": h.available} for h in snapshot]
        missing = sorted(served - covered)
        ready = store_ok and not missing
        return {"ready": ready, "store": store_ok, "unserved_models": missing,
                "upstreams": upstreams}  # fmt: skip

    async def _store_ok(self) -> bool:
        try:
            async with self.pool.connection(timeout=2) as conn:
                await conn.execute("SELECT 1")
        except Exception as exc:  # readiness reports the outage instead of failing
            logger.warning("store not ready: %s", exc)
            return False
        return True

    def render_metrics(self) -> tuple[bytes, str]:
        """The engine's metrics (when it runs here) and the pipeline's, in one scrape."""
        parts = [self.gateway_metrics.render(), generate_latest(PIPELINE_METRICS.registry)]
        if self._engine_metrics is not None:
            parts.insert(0, self._engine_metrics.render())
        return b"".join(parts), CONTENT_TYPE
