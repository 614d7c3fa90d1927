"""Everything `strata serve` runs, built from one `Settings` and started and stopped in order.

Start: the store (embedded PostgreSQL or a DSN, migrations) → keys (and the first admin key,
printed once) → the usage ledger → the limiter, seeded from the ledger's day and month →
the built-in engine (when `gateway.engine`) → the router with its health checks (and the
replicas of `discover` upstreams, read from the registry) → the alert rules → the request
logs → the pipeline → the dashboard's sampler. Stop runs the same list backwards, so the
ledger's last rows are written before the store goes away.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import APIRouter, FastAPI
from prometheus_client import generate_latest

from strata.config import Settings, UpstreamSettings
from strata.engine.engine import Engine
from strata.engine.server import build_engine_app
from strata.errors import StrataError
from strata.gateway.admin_api import admin_router
from strata.gateway.auth import Authenticator
from strata.gateway.dashboard_sessions import DashboardSessions
from strata.gateway.dpa import check_dpa_coverage
from strata.gateway.guard_step import GuardStep
from strata.gateway.identity import IssuedKey, KeyStore
from strata.gateway.ledger import LedgerWriter, period_starts, period_usage
from strata.gateway.limits import Limiter, SeedEntry, build_limiter
from strata.gateway.pipeline import Gateway, GatewayParts
from strata.gateway.replica_time import ReplicaTimeWriter
from strata.gateway.request_logs.entry import LogRedactor
from strata.gateway.request_logs.service import RequestLogs
from strata.gateway.retrieval import RetrievalRoutes, lazy_embedder, search_for
from strata.gateway.upstream import EngineBinding, Router
from strata.gateway.upstream.discovery import Discovery
from strata.guard import Canary, Guard
from strata.pipeline import METRICS as PIPELINE_METRICS
from strata.pipeline.service import PipelineService
from strata.secret_files import read_or_create_secret
from strata.store.database import Database, Pool
from strata.telemetry.alerts import AlertService
from strata.telemetry.engine_metrics import CONTENT_TYPE, EngineMetrics
from strata.telemetry.gateway_metrics import GatewayMetrics
from strata.telemetry.otel import EngineTelemetry, GatewayTelemetry, Otel
from strata.telemetry.pricing import PriceTable
from strata.telemetry.replica_cost import ReplicaCostCollector, ReplicaSource
from strata.telemetry.routing_metrics import PrefixRoutingCollector
from strata.telemetry.sampler import Sampler

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltinEngine:
    """The in-process engine and its internal HTTP app (served to the router, never public)."""

    engine: Engine
    app: Any  # the ASGI app from strata.engine.server.build_engine_app
    token: str
    metrics: EngineMetrics  # what that app records, scraped by the gateway's /metrics
    otel: Otel | None = None  # the OpenTelemetry providers that app reports to

    @classmethod
    def serving(cls, engine: Engine, settings: Settings) -> BuiltinEngine:
        """`engine` behind its app with a fresh in-process token (it never leaves this
        process), reporting to OpenTelemetry when `telemetry.otel` turns it on."""
        token = secrets.token_urlsafe(32)
        metrics = EngineMetrics(engine.stats)
        otel = Otel.from_settings(settings.telemetry.otel)
        telemetry = None if otel is None else EngineTelemetry(otel, engine.model_name)
        recording = settings.telemetry.engine_instrumentation
        app = build_engine_app(engine, token, manage_engine=False, metrics=metrics,
                               telemetry=telemetry, instrumentation=recording)  # fmt: skip
        return cls(engine, app, token, metrics, otel)


def _replica_sources(
    engine: BuiltinEngine | None, upstreams: list[UpstreamSettings], prices: PriceTable
) -> list[ReplicaSource]:
    """The built-in engine's replica clock, when its upstream is priced by replica time."""
    if engine is None:
        return []
    return [
        ReplicaSource(u.name, usd, engine.engine.stats)
        for u in upstreams
        if u.kind == "engine" and (usd := prices.replica_second_price(u.name)) is not None
    ]


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
        self.dashboard_sessions = DashboardSessions(settings.telemetry.dashboard_session_s)
        self.alerts: AlertService | None = None  # the alert rules: GET /admin/alerts, the dashboard

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
            self._start_otel()
            await self._start_store()
            await self._start_limits()
            await self._start_engine()
            await self._start_router()
            embedder = lazy_embedder(self.settings)
            search = search_for(self.settings, self.pool, embedder)
            self.gateway_metrics = GatewayMetrics(
                self.settings.telemetry.tenant_labels, self.router.health_snapshot
            )
            prefix_routing = PrefixRoutingCollector(self.router.prefix.snapshot)
            self.gateway_metrics.registry.register(prefix_routing)
            self.router.admission.observers.append(self.gateway_metrics.fair_wait)
            guard = self._guard_step()
            if guard is not None:  # the first gated request must not pay for loading MiniLM
                await asyncio.to_thread(guard.warm_up)
            alerts = self._start_alerts()
            logs = await self._start_request_logs()
            prices = self._start_replica_time()
            self.gateway = Gateway(
                GatewayParts(self.settings, self.auth, self.limiter, self.router, self.ledger,
                             prices, search, self.gateway_metrics,
                             guard, self._gateway_telemetry(), alerts, logs)
            )  # fmt: skip
            self.retrieval = RetrievalRoutes(self.settings, self.gateway, self.pool, embedder)
            await self._start_pipeline()
            self._start_sampler()
        except BaseException:
            await self.aclose()
            raise
        _settle_the_heap()

    async def aclose(self) -> None:
        await self._stack.aclose()

    def _start_otel(self) -> None:
        """OpenTelemetry: the built-in engine's providers, else the settings' own (None: off);
        shut down last, so that what the other parts reported on their way out is exported."""
        builtin = self.engine.otel if self.engine is not None else None
        self.otel = builtin or Otel.from_settings(self.settings.telemetry.otel)
        if self.otel is not None:
            self._stack.push_async_callback(asyncio.to_thread, self.otel.shutdown)

    def _gateway_telemetry(self) -> GatewayTelemetry | None:
        if self.otel is None:
            return None
        upstreams = [member.upstream.settings for member in self.router.members]
        return GatewayTelemetry.for_upstreams(self.otel, upstreams)

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
        used = self._period_usage = await period_usage(self.pool, day, month)
        await self.limiter.seed(
            SeedEntry(u.kind, u.id, u.day_tokens, u.day_cost_usd, u.month_tokens,
                      u.month_cost_usd)
            for u in used
        )  # fmt: skip

    def _start_alerts(self) -> AlertService | None:
        """The alert rules, fed by the finisher, seeded with the ledger's quota usage, and
        evaluated in the background; their firing count joins /metrics."""
        if not self.settings.alerts.enabled:
            return None
        alerts = AlertService.from_settings(self.settings.alerts, PIPELINE_METRICS.registry)
        alerts.seed_usage(self._period_usage)
        self.gateway_metrics.registry.register(alerts.collector())
        alerts.start()
        self._stack.push_async_callback(alerts.aclose)
        self.alerts = alerts
        return alerts

    async def _start_request_logs(self) -> RequestLogs:
        """Request logs: the opted-in tenants read, the writer and the retention purge running
        (closed before the store, so the last logs are written). Redaction includes the
        guard's canary when the guard runs."""
        redactor = LogRedactor(getattr(self, "canary", None))
        self.request_logs = RequestLogs(self.pool, self.settings.request_logs, redactor)
        await self.request_logs.start()
        self._stack.push_async_callback(self.request_logs.aclose)
        return self.request_logs

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
        discovery = Discovery.from_settings(self.router, self.settings)
        if discovery is not None:  # replicas announced in the registry (strata deploy ray)
            await discovery.start()
            self._stack.push_async_callback(discovery.aclose)
        check_dpa_coverage(
            await self.keys.list_tenants(),
            await self.keys.list_keys(),
            self.router.models_with_dpa(),
            self.router.resolve,
        )
        await self.router.start()
        self._stack.push_async_callback(self.router.aclose)

    def _start_replica_time(self) -> PriceTable:
        """The price table over the routed upstreams; the self-hosted replica clocks read here
        (the built-in engine's) join /metrics and are written to the store."""
        upstreams = [member.upstream.settings for member in self.router.members]
        prices = PriceTable(self.settings.pricing, upstreams)
        sources = _replica_sources(self.engine, upstreams, prices)
        self.gateway_metrics.registry.register(ReplicaCostCollector(sources))
        self.replica_time = ReplicaTimeWriter(self.pool, sources)
        self.replica_time.start()
        self._stack.push_async_callback(self.replica_time.aclose)
        return prices

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

    def _start_sampler(self) -> None:
        """The dashboard's history of what `/metrics` exposes."""
        registries = [self.gateway_metrics.registry, PIPELINE_METRICS.registry]
        if self._engine_metrics is not None:
            registries.insert(0, self._engine_metrics.registry)
        telemetry = self.settings.telemetry
        self.sampler = Sampler(registries, telemetry.dashboard_interval_s,
                               telemetry.dashboard_points)  # fmt: skip
        self.sampler.start()
        self._stack.push_async_callback(self.sampler.aclose)

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
