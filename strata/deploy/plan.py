"""What `strata deploy ray` runs, derived from the one `Settings` that `strata serve` reads; no Ray
here, so it is checked before a cluster is touched.

- Engine pools (`deploy.ray.engines`): each replica serves `engine` (the same section `strata
  serve` uses) behind `engine_server.token` and announces itself in the registry under the
  pool's name.
- Gateway replicas: `strata serve`'s gateway with `gateway.engine` off and, in place of the
  built-in engine, one `discover` upstream per pool (its tier, `max_in_flight`, the engines'
  token); the other configured upstreams stay as they are.
- Shared state: keys, ledger and vectors in the PostgreSQL at `store.dsn`, limits and the
  registry in the Redis at `redis_url`. Both are required: an embedded database or in-process
  counters would be one per replica.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from strata.config import EnginePoolSettings, RayDeploySettings, Settings, UpstreamSettings
from strata.deploy.autoscaling import QueueDepthPolicy
from strata.errors import ConfigError
from strata.gateway.upstream.prompt_blocks import BUNDLED
from strata.secret_files import read_or_create_secret

ENGINE_TOKEN_ENV = "STRATA_DEPLOY_ENGINE_TOKEN"  # how gateway replicas get the engines' token
ENGINE_APP_PREFIX = "strata-engine-"  # a Serve application per pool: strata-engine-<pool>
GATEWAY_APP = "strata-gateway"
TTL_HEARTBEATS = 3  # a registry entry outlives this many missed heartbeats


@dataclass(frozen=True)
class ClusterPlan:
    """Everything the deployment needs, checked: `engine_settings` (with the engines' token
    and an absolute data_dir) go to engine replicas, `gateway_settings(models)` to gateway
    replicas, once the engines have said which models they serve."""

    engine_settings: Settings
    ray: RayDeploySettings
    token: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ClusterPlan:
        """Raise `ConfigError` naming the setting when the cluster cannot run `settings`."""
        _check_shared_state(settings)
        _check_pool_names(settings)
        _check_spot_fallback(settings)
        engine = settings.model_copy(deep=True)
        engine.data_dir = settings.data_dir.resolve()  # replicas do not share the command's cwd
        token = _engine_token(settings)
        engine.engine_server.token = SecretStr(token)
        return cls(engine, settings.deploy.ray, token)

    @property
    def pools(self) -> Sequence[EnginePoolSettings]:
        return self.ray.engines

    def gateway_settings(self, models: Sequence[str]) -> Settings:
        """The gateways' settings: the configured upstreams without the built-in engine, plus
        one `discover` upstream per pool serving `models` (what the replicas announced)."""
        gateway = self.engine_settings.model_copy(deep=True)
        gateway.gateway.engine = False
        kept = [u for u in gateway.upstreams if u.kind != "engine"]
        engine_model = self.engine_settings.engine.model or BUNDLED
        pools = [pool_upstream(pool, models, engine_model) for pool in self.pools]
        gateway.upstreams = [*kept, *pools]
        return gateway

    def gateway_env(self) -> dict[str, str]:
        return {ENGINE_TOKEN_ENV: self.token}

    def required_cpus(self) -> float:
        """CPUs the minimum replicas reserve: what the cluster must have free."""
        engines = sum(p.min_replicas * p.num_cpus for p in self.pools)
        return engines + self.ray.gateway_replicas * self.ray.gateway_cpus


def pool_upstream(
    pool: EnginePoolSettings, models: Sequence[str], engine_model: str
) -> UpstreamSettings:
    """The gateway's upstream for `pool`: its replicas read from the registry, known as strata
    engines of `engine_model` (so routing.prefix_affinity can route by their KV caches)."""
    return UpstreamSettings(
        name=pool.name,
        discover=pool.name,
        models=list(models),
        tier=pool.tier,
        max_in_flight=pool.max_in_flight,
        api_key_env=ENGINE_TOKEN_ENV,
        engine_model=engine_model,
        dpa=True,  # strata's own engines on the team's cluster: prompts stay in-house
    )


def engine_app_name(pool: EnginePoolSettings) -> str:
    return ENGINE_APP_PREFIX + pool.name


def engine_deployment_options(pool: EnginePoolSettings, ray: RayDeploySettings) -> dict[str, Any]:
    """Ray Serve deployment options for `pool`: a fixed replica count, or autoscaling between
    its bounds by `QueueDepthPolicy`; fractional CPUs are fine."""
    options: dict[str, Any] = {
        "name": pool.name,
        "ray_actor_options": {
            "num_cpus": pool.num_cpus,
            "num_gpus": pool.num_gpus,
            "resources": dict(pool.resources),
        },
        "health_check_period_s": ray.health_check_period_s,
        "health_check_timeout_s": max(10.0, 3 * ray.health_check_period_s),
        # The drain waits for the gateways to notice the replica left, then for its requests.
        "graceful_shutdown_timeout_s": ray.drain_timeout_s + 10.0,
        "graceful_shutdown_wait_loop_s": 0.5,
    }
    if pool.autoscaled:
        options["autoscaling_config"] = autoscaling_config(pool)
    else:
        options["num_replicas"] = pool.min_replicas
    return options


def autoscaling_config(pool: EnginePoolSettings) -> dict[str, Any]:
    """`AutoscalingConfig` fields for `pool` (the policy named by its import path)."""
    return {
        "min_replicas": pool.min_replicas,
        "max_replicas": pool.max_replicas,
        "upscale_delay_s": pool.upscale_delay_s,
        "downscale_delay_s": pool.downscale_delay_s,
        "look_back_period_s": pool.look_back_s,
        "metrics_interval_s": pool.metrics_interval_s,
        "policy": {
            "policy_function": f"{QueueDepthPolicy.__module__}:{QueueDepthPolicy.__name__}",
            "policy_kwargs": {
                "target_queue_depth": pool.target_queue_depth,
                "slo_attainment_target": pool.slo_attainment_target,
            },
        },
    }


def gateway_deployment_options(ray: RayDeploySettings, env: dict[str, str]) -> dict[str, Any]:
    return {
        "name": "gateway",
        "num_replicas": ray.gateway_replicas,
        "ray_actor_options": {"num_cpus": ray.gateway_cpus, "runtime_env": {"env_vars": env}},
        "health_check_period_s": ray.health_check_period_s,
        "max_ongoing_requests": 1000,  # the gateway's own limits and fair queue decide
    }


def _check_shared_state(settings: Settings) -> None:
    if settings.store.dsn is None:
        raise ConfigError(
            "store.dsn is empty: on a cluster every gateway replica must share one PostgreSQL "
            "(with pgvector) for keys, the ledger and vectors; set store.dsn "
            "(STRATA_STORE__DSN), e.g. postgresql://strata@10.0.0.2/strata."
        )
    if settings.redis_url is None:
        raise ConfigError(
            "redis_url is empty: on a cluster the gateway replicas share limits and find the "
            "engine replicas through one Redis; set redis_url (STRATA_REDIS_URL), e.g. "
            "redis://10.0.0.3:6379/0."
        )


def _check_pool_names(settings: Settings) -> None:
    """Pools become upstreams of the gateways next to the configured ones: names must differ."""
    taken = {u.name for u in settings.upstreams if u.kind != "engine"}
    clash = sorted(taken & {pool.name for pool in settings.deploy.ray.engines})
    if clash:
        raise ConfigError(
            f"deploy.ray.engines {clash}: upstreams already have these names; rename the "
            "pools or the upstreams."
        )


def _check_spot_fallback(settings: Settings) -> None:
    """A spot pool needs on-demand capacity to fail over to, as a spot upstream does."""
    pools = settings.deploy.ray.engines
    spot = [p.name for p in pools if p.tier == "spot"]
    on_demand = [p for p in pools if p.tier == "on-demand"] + [
        u for u in settings.upstreams if u.tier == "on-demand" and u.kind != "engine"
    ]
    if spot and not on_demand:
        raise ConfigError(
            f"deploy.ray.engines {spot} are spot pools without on-demand capacity to fail over "
            "to; add a pool with tier: on-demand (or an on-demand upstream), or change their "
            "tier."
        )


def _engine_token(settings: Settings) -> str:
    """`engine_server.token` when set, else the one kept in <data_dir>/engine.token where the
    command runs (made once, so a redeploy keeps engines and gateways agreeing). It reaches
    the replicas inside their settings and the gateways' environment."""
    if settings.engine_server.token is not None:
        token = settings.engine_server.token.get_secret_value().strip()
        if not token:
            raise ConfigError("engine_server.token is empty; set a token or remove the key.")
        return token
    return read_or_create_secret(settings.engine_token_file)
