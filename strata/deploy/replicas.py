"""The two Ray Serve deployments of `strata deploy ray` (the only module, with `cluster`, that
imports Ray).

- `EngineReplica`: one engine server (`engine_server`) on a free port of its node, announced in
  the registry under its pool (`announcer`). Requests do not pass through Ray: the gateways'
  router sends them straight to the announced URL, with the same tiers, health checks, retries
  and failover as any upstream. Ray keeps the replica count (autoscaling on the metrics from
  `record_autoscaling_stats`, see `autoscaling`) and replaces a replica whose `check_health`
  fails or whose process died.
- `GatewayReplica`: `strata serve`'s gateway app (`build_gateway_app`) as a Serve ingress; Ray's
  HTTP proxy spreads clients over the replicas. Each replica is stateless: keys, ledger and
  vectors live in PostgreSQL, limits and the registry in Redis. Answers carry
  `x-strata-gateway: <replica>`, so an operator can tell which replica answered.

A graceful stop of an engine replica (scale-down, redeploy): withdraw from the registry, wait
one discovery interval for the gateways to stop sending, finish what runs (at most
`drain_timeout_s`), stop. A request that still arrives finds the port closed before anything
was sent back, and the router fails it over.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import ray
from ray import serve
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.config import Settings
from strata.deploy.announcer import Announcer
from strata.deploy.autoscaling import replica_metrics
from strata.deploy.engine_server import EngineServer
from strata.errors import EngineError
from strata.gateway.upstream.registry import Registry, ReplicaRecord

logger = logging.getLogger(__name__)

REPLICA_HEADER = b"x-strata-gateway"


def _replica_name() -> str:
    return serve.get_replica_context().replica_id.unique_id


class EngineReplica:
    """One engine replica of pool `pool` (a Serve deployment named after it)."""

    async def __init__(self, settings: Settings, pool: str) -> None:  # type: ignore[misc]
        # Ray Serve awaits an async constructor; mypy insists __init__ returns None.
        assert settings.redis_url is not None  # ClusterPlan checked it
        self.settings = settings
        host = ray.util.get_node_ip_address()
        self.server = await asyncio.to_thread(EngineServer, settings, host)  # loads the model
        await asyncio.to_thread(self.server.start)
        record = ReplicaRecord(_replica_name(), self.server.url, (self.server.model_name,))
        registry = Registry.from_url(settings.redis_url.get_secret_value())
        self.announcer = Announcer(registry, pool, record, settings.deploy.ray.heartbeat_s)
        try:
            await self.announcer.start()
        except BaseException:
            await registry.aclose()
            self.server.stop()
            raise

    def check_health(self) -> None:
        """Ray's health check: raising makes Ray replace this replica."""
        if not self.server.alive:
            raise EngineError(f"the engine server at {self.server.url} is not serving")

    def record_autoscaling_stats(self) -> dict[str, float]:
        return replica_metrics(self.server.stats())

    def describe(self) -> dict[str, Any]:
        """Where this replica serves and what (for `strata deploy ray` and the tests)."""
        record = self.announcer.record
        return {"name": record.name, "url": record.url, "models": list(record.models),
                "pid": os.getpid()}  # fmt: skip

    async def __del__(self) -> None:
        await self.announcer.aclose()
        await asyncio.sleep(self.settings.routing.discovery_interval_s)  # gateways catch up
        drained = await self.server.drain(self.settings.deploy.ray.drain_timeout_s)
        if not drained:
            logger.warning("stopping with requests still running (drain_timeout_s passed)")
        await asyncio.to_thread(self.server.stop)


@serve.ingress()
class GatewayReplica:
    """One gateway replica: `strata serve`'s gateway without the built-in engine."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def __serve_build_asgi_app__(self) -> ASGIApp:
        # Imported here: the gateway's stack is only needed where a gateway runs.
        from strata.gateway.app import build_gateway_app
        from strata.gateway.runtime import GatewayRuntime

        app = build_gateway_app(GatewayRuntime(self.settings))
        return ReplicaHeader(app, _replica_name().encode())


class ReplicaHeader:
    """ASGI middleware adding `x-strata-gateway: <replica>` to every HTTP answer."""

    def __init__(self, app: ASGIApp, replica: bytes) -> None:
        self.app = app
        self.replica = replica

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (REPLICA_HEADER, self.replica)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_header)
