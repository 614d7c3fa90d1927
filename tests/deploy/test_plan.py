"""What `strata deploy ray` derives from the settings, and the settings it refuses (no Ray)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from strata.config import EnginePoolSettings, Settings, UpstreamSettings, load_settings
from strata.deploy.autoscaling import QueueDepthPolicy
from strata.deploy.plan import (
    ENGINE_TOKEN_ENV,
    ClusterPlan,
    engine_deployment_options,
    gateway_deployment_options,
)
from strata.errors import ConfigError

SHARED = {"store": {"dsn": "host=/tmp dbname=strata"}, "redis_url": "redis://10.0.0.3:6379/0"}


def settings(tmp_path: Path, **fields: Any) -> Settings:
    return Settings.model_validate({"data_dir": str(tmp_path), **SHARED, **fields})


def test_a_cluster_needs_a_shared_database_and_redis(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"store.dsn is empty.*STRATA_STORE__DSN"):
        ClusterPlan.from_settings(Settings(data_dir=tmp_path, redis_url="redis://r:6379/0"))
    with pytest.raises(ConfigError, match=r"redis_url is empty.*STRATA_REDIS_URL"):
        ClusterPlan.from_settings(Settings(data_dir=tmp_path, store={"dsn": "host=/tmp"}))


def test_a_spot_pool_needs_on_demand_capacity(tmp_path: Path) -> None:
    spot_only = {"ray": {"engines": [{"name": "cheap", "tier": "spot"}]}}
    with pytest.raises(ConfigError, match=r"\['cheap'\] are spot pools"):
        ClusterPlan.from_settings(settings(tmp_path, deploy=spot_only))
    with_fallback = {"ray": {"engines": [{"name": "cheap", "tier": "spot"},
                                         {"name": "sure", "tier": "on-demand"}]}}  # fmt: skip
    assert len(ClusterPlan.from_settings(settings(tmp_path, deploy=with_fallback)).pools) == 2


def test_a_pool_may_not_take_the_name_of_an_upstream(tmp_path: Path) -> None:
    clashing = settings(
        tmp_path,
        upstreams=[{"name": "engine", "url": "https://api.example.com/v1", "models": ["m"]}],
    )
    with pytest.raises(ConfigError, match=r"deploy.ray.engines \['engine'\]: upstreams already"):
        ClusterPlan.from_settings(clashing)


def test_the_engine_token_is_configured_or_kept_in_the_data_dir(tmp_path: Path) -> None:
    configured = settings(tmp_path, engine_server={"token": "s3cret"})
    assert ClusterPlan.from_settings(configured).token == "s3cret"
    first = ClusterPlan.from_settings(settings(tmp_path))
    again = ClusterPlan.from_settings(settings(tmp_path))
    assert first.token == again.token != "s3cret"  # a redeploy keeps engines and gateways agreeing
    assert (tmp_path / "engine.token").stat().st_mode & 0o077 == 0
    token = first.engine_settings.engine_server.token
    assert token is not None and token.get_secret_value() == first.token
    with pytest.raises(ConfigError, match=r"engine_server\.token is empty"):
        ClusterPlan.from_settings(settings(tmp_path, engine_server={"token": "  "}))


def test_replicas_get_an_absolute_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    plan = ClusterPlan.from_settings(Settings.model_validate({**SHARED, "data_dir": "state"}))
    assert plan.engine_settings.data_dir == tmp_path / "state"


def test_gateways_route_to_the_pools_instead_of_the_builtin_engine(tmp_path: Path) -> None:
    configured = settings(
        tmp_path,
        engine={"model": "/models/smol"},
        upstreams=[
            {"name": "engine", "kind": "engine"},
            {"name": "api", "url": "https://api.example.com/v1", "models": ["big"]},
        ],
        deploy={"ray": {"engines": [{"name": "base", "tier": "reserved", "max_in_flight": 8},
                                    {"name": "burst", "tier": "on-demand"}]}},
    )  # fmt: skip
    plan = ClusterPlan.from_settings(configured)
    gateway = plan.gateway_settings(["smol"])
    assert gateway.gateway.engine is False
    assert [u.name for u in gateway.upstreams] == ["api", "base", "burst"]
    base = gateway.upstreams[1]
    assert (base.discover, base.models, base.tier, base.max_in_flight) == (
        "base", ["smol"], "reserved", 8
    )  # fmt: skip
    assert (base.api_key_env, base.engine_model, base.url) == (
        ENGINE_TOKEN_ENV,
        "/models/smol",
        None,
    )
    assert plan.gateway_env() == {ENGINE_TOKEN_ENV: plan.token}
    assert configured.gateway.engine is True and len(configured.upstreams) == 2  # untouched


def test_a_fixed_pool_has_a_replica_count_and_an_autoscaled_one_the_policy(
    tmp_path: Path,
) -> None:
    ray = settings(tmp_path).deploy.ray
    fixed = engine_deployment_options(EnginePoolSettings(min_replicas=2, max_replicas=2), ray)
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.0, "resources": {}}
    pool = EnginePoolSettings(min_replicas=1, max_replicas=4, target_queue_depth=3,
                              num_cpus=0.25, resources={"spot": 1})  # fmt: skip
    scaled = engine_deployment_options(pool, ray)
    autoscaling = scaled["autoscaling_config"]
    assert "num_replicas" not in scaled
    assert (autoscaling["min_replicas"], autoscaling["max_replicas"]) == (1, 4)
    module, name = autoscaling["policy"]["policy_function"].split(":")
    assert getattr(importlib.import_module(module), name) is QueueDepthPolicy
    assert autoscaling["policy"]["policy_kwargs"] == {
        "target_queue_depth": 3.0, "slo_attainment_target": 0.9
    }  # fmt: skip
    assert scaled["ray_actor_options"]["resources"] == {"spot": 1}
    assert scaled["graceful_shutdown_timeout_s"] > ray.drain_timeout_s


def test_the_minimum_replicas_add_up_to_the_cpus_the_cluster_must_have(tmp_path: Path) -> None:
    deploy = {"ray": {"gateway_replicas": 2, "gateway_cpus": 0.5,
                      "engines": [{"name": "a", "min_replicas": 2, "max_replicas": 5,
                                   "num_cpus": 1.5}]}}  # fmt: skip
    plan = ClusterPlan.from_settings(settings(tmp_path, deploy=deploy))
    assert plan.required_cpus() == 2 * 1.5 + 2 * 0.5
    gateway = gateway_deployment_options(plan.ray, {"X": "y"})
    assert gateway["num_replicas"] == 2
    assert gateway["ray_actor_options"]["runtime_env"] == {"env_vars": {"X": "y"}}


@pytest.mark.parametrize(
    ("pools", "message"),
    [
        ([{"min_replicas": 3, "max_replicas": 2}], "max_replicas (2) is below min_replicas (3)"),
        ([{"min_replicas": 0}], "min_replicas: Input should be greater than or equal to 1"),
        ([{"name": "a"}, {"name": "a"}], "names must be unique; repeated: ['a']"),
        ([], "engines: List should have at least 1 item"),
    ],
)
def test_bad_pools_are_refused_naming_the_key(
    tmp_path: Path, pools: list[dict[str, Any]], message: str
) -> None:
    path = tmp_path / "strata.yaml"
    path.write_text(f"deploy: {{ray: {{engines: {pools}}}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert message in caught.value.message
    assert "deploy" in caught.value.message


def test_a_discovered_upstream_is_checked() -> None:
    with pytest.raises(ValueError, match="remove url"):
        UpstreamSettings(name="p", discover="p", url="http://x:1/v1", models=["m"])
    with pytest.raises(ValueError, match="list the models"):
        UpstreamSettings(name="p", discover="p")
    with pytest.raises(ValueError, match="only kind openai can be discovered"):
        UpstreamSettings(name="p", kind="engine", discover="p", models=["m"])
    with pytest.raises(ValueError, match="set redis_url"):
        Settings(gateway={"engine": False}, upstreams=[{"name": "p", "discover": "p",
                                                         "models": ["m"]}])  # fmt: skip
