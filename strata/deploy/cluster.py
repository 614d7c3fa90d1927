"""strata's Serve applications on a Ray cluster: connect, check room, deploy, report.

    cluster = RayCluster.connect(address, namespace)     # or a Ray started in this process
    deployed = cluster.deploy(plan)                       # engine pools first, then gateways
    ...
    cluster.shutdown()                                    # only what `connect` started

Each engine pool is its own application (`strata-engine-<pool>`, no HTTP route), so a pool can
be redeployed or rescaled without touching the gateways; the gateways are the application
`strata-gateway` behind Ray Serve's HTTP proxy at `deploy.ray.http_host:http_port`. Pools are
deployed first: the gateways learn the model name from what the engine replicas announce.
Failures a user can fix raise `ClusterError`.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import serve

from strata.config import EnginePoolSettings
from strata.deploy.plan import (
    GATEWAY_APP,
    ClusterPlan,
    engine_app_name,
    engine_deployment_options,
    gateway_deployment_options,
)
from strata.deploy.replicas import EngineReplica, GatewayReplica
from strata.errors import ClusterError

CONNECT_TIMEOUT_S = 5.0
DESCRIBE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Deployed:
    """What `deploy` started: the public base URL and the models the engines serve."""

    url: str
    models: tuple[str, ...]


class RayCluster:
    """One connection to Ray per process (Ray's own rule)."""

    def __init__(self, started_here: bool) -> None:
        self.started_here = started_here

    @classmethod
    def connect(
        cls,
        address: str | None,
        namespace: str,
        *,
        num_cpus: float | None = None,
        temp_dir: Path | None = None,
    ) -> RayCluster:
        """Join the cluster at `address`, or start Ray in this process when it is None
        (`num_cpus`, `temp_dir` apply only then). `ClusterError` when nothing answers."""
        if address is not None:
            _check_reachable(address)
        local: dict[str, Any] = {}
        if address is None:
            local = {"num_cpus": num_cpus, "_temp_dir": None if temp_dir is None else str(temp_dir)}
        try:
            ray.init(address=address, namespace=namespace, include_dashboard=False,
                     log_to_driver=False, **local)  # fmt: skip
        except (ConnectionError, RuntimeError, TimeoutError, ValueError) as exc:
            where = f"at {address}" if address else "in this process"
            raise ClusterError(f"Cannot start or join Ray {where}: {exc}") from exc
        return cls(started_here=address is None)

    def deploy(self, plan: ClusterPlan, http_host: str, http_port: int) -> Deployed:
        """Deploy every engine pool, then the gateways; return once all answer."""
        self.check_room(plan)
        serve.start(http_options={"host": http_host, "port": http_port})
        models = self.deploy_pools(plan, plan.pools)
        self.deploy_gateways(plan, models)
        return Deployed(f"http://{http_host}:{http_port}/v1", models)

    def check_room(self, plan: ClusterPlan) -> None:
        """`ClusterError` when the minimum replicas cannot all be placed (they would wait,
        pending, forever)."""
        have = ray.cluster_resources().get("CPU", 0.0)
        need = plan.required_cpus()
        if need > have:
            raise ClusterError(
                f"The minimum replicas reserve {need:g} CPUs and the cluster has {have:g}: "
                "lower deploy.ray.engines[].num_cpus / min_replicas or deploy.ray."
                "gateway_cpus / gateway_replicas (fractions are fine), or add nodes."
            )

    def deploy_pools(
        self, plan: ClusterPlan, pools: Sequence[EnginePoolSettings]
    ) -> tuple[str, ...]:
        """(Re)deploy `pools`; the models their replicas serve (all serve `engine`)."""
        models: set[str] = set()
        for pool in pools:
            self._run_pool(plan, pool)
            models.update(self.describe(pool)["models"])
        return tuple(sorted(models))

    def deploy_gateways(self, plan: ClusterPlan, models: Sequence[str]) -> None:
        options = gateway_deployment_options(plan.ray, plan.gateway_env())
        app = serve.deployment(**options)(GatewayReplica)
        _run(app.bind(plan.gateway_settings(models)), GATEWAY_APP, route_prefix="/")

    def replicas_running(self, pool: EnginePoolSettings) -> int:
        """How many replicas of `pool` Ray reports running."""
        app = serve.status().applications.get(engine_app_name(pool))
        if app is None or pool.name not in app.deployments:
            return 0
        states = app.deployments[pool.name].replica_states
        return sum(count for state, count in states.items() if state == "RUNNING")

    def describe(self, pool: EnginePoolSettings) -> dict[str, Any]:
        """Name, url, models and process id of one running replica of `pool` (Ray picks)."""
        handle = serve.get_deployment_handle(pool.name, app_name=engine_app_name(pool))
        described: dict[str, Any] = handle.describe.remote().result(timeout_s=DESCRIBE_TIMEOUT_S)
        return described

    def shutdown(self) -> None:
        """Remove strata's applications when Ray was started here, and stop it; a cluster
        joined by address keeps running them (`serve shutdown` removes them there)."""
        if self.started_here:
            serve.shutdown()
        ray.shutdown()

    def _run_pool(self, plan: ClusterPlan, pool: EnginePoolSettings) -> None:
        app = serve.deployment(**engine_deployment_options(pool, plan.ray))(EngineReplica)
        _run(app.bind(plan.engine_settings, pool.name), engine_app_name(pool), None)


def _run(app: Any, name: str, route_prefix: str | None) -> None:
    try:
        serve.run(app, name=name, route_prefix=route_prefix)
    except RuntimeError as exc:  # Serve reports a replica that failed to start this way
        raise ClusterError(
            f"The Serve application {name} did not start: {exc}. The replicas' logs are under "
            "the Ray session's logs/serve/."
        ) from exc


def _check_reachable(address: str) -> None:
    """Fail fast, naming `address`, when no TCP listener is there (Ray would otherwise retry
    for about a minute before a vague error). 'auto' is left to Ray."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(
            f"Ray address {address!r} (--address or deploy.ray.address): expected 'auto', "
            "HOST:PORT of the head node's GCS (e.g. 10.0.0.1:6380) or ray://HOST:10001."
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ClusterError(
            f"No Ray reachable at {address} ({exc.strerror or exc}); start one with "
            "`ray start --head --port 6380` on the head node, or check the address and port."
        ) from exc
