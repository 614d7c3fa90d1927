"""Prefix-aware routing assembled from the settings: on only where an upstream names its
engine model, validated settings, a feed that survives upstreams that are not strata engines,
and its counts on /metrics."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from strata.config import RoutingSettings, Settings, load_settings
from strata.engine.block_hash import prefix_hashes
from strata.engine.server import build_engine_app
from strata.errors import ConfigError
from strata.gateway.upstream import EngineBinding, Router, UpstreamCall
from strata.gateway.upstream.affinity import PrefixAffinity
from strata.gateway.upstream.policy import TierOrder
from strata.gateway.upstream.prefix_routing import PrefixRouting
from strata.gateway.upstream.upstreams import HttpUpstream
from strata.telemetry.routing_metrics import PrefixRoutingCollector
from tests.support.live_server import MODEL, TOKEN, make_engine
from tests.support.mock_upstream import MockUpstream


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [key for key in os.environ if key.startswith("STRATA_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("STRATA_CONFIG", "")
    monkeypatch.chdir(tmp_path)


def settings(tmp_path: Path, *engine_models: str | None, **routing: Any) -> Settings:
    upstreams = [
        {"name": f"r{i}", "url": f"http://127.0.0.1:{9000 + i}/v1", "models": ["m"],
         **({} if spec is None else {"engine_model": spec})}
        for i, spec in enumerate(engine_models)
    ]  # fmt: skip
    return Settings(data_dir=tmp_path, gateway={"engine": False}, upstreams=upstreams,
                    routing=routing)  # fmt: skip


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "named"),
    [({"routing": {"prefix_overload_margin": -1}}, "routing.prefix_overload_margin"),
     ({"routing": {"kv_poll_interval_s": 0}}, "routing.kv_poll_interval_s"),
     ({"routing": {"prefix_min_match": 1.5}}, "routing.prefix_min_match"),
     ({"routing": {"prefix_affinity": "sometimes"}}, "routing.prefix_affinity"),
     ({"upstreams": [{"name": "e", "kind": "engine", "engine_model": "x"}]},
      "remove its engine_model"),
     ({"upstreams": [{"name": "u", "url": "http://h/v1", "engine_model": " "}]},
      "engine_model is empty")],
)  # fmt: skip
def test_bad_routing_settings_name_the_key(overrides: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(**overrides)


def test_defaults() -> None:
    routing = RoutingSettings()
    assert routing.prefix_affinity is True
    assert routing.prefix_overload_margin == 4 and routing.kv_poll_interval_s == 0.25
    assert routing.prefix_min_match == 0.5


# -- assembly --------------------------------------------------------------------------------


def test_off_without_an_engine_model_or_when_turned_off(
    smollm2_folder: Path, tmp_path: Path
) -> None:
    assert not PrefixRouting.from_settings(settings(tmp_path, None, None)).enabled
    off = settings(tmp_path, str(smollm2_folder), str(smollm2_folder), prefix_affinity=False)
    assert not PrefixRouting.from_settings(off).enabled
    inner = TierOrder()
    assert PrefixRouting(RoutingSettings(), {}).around(inner) is inner


async def test_on_for_strata_engines_only(smollm2_folder: Path, tmp_path: Path) -> None:
    config = settings(tmp_path, str(smollm2_folder), f" {smollm2_folder} ", None)
    router = Router.from_settings(config)
    try:
        assert router.prefix.enabled and isinstance(router.order, PrefixAffinity)
        assert len(router.prefix.hashers) == 1  # one tokenizer per model, however spelled
        hashers = [router.prefix.hasher_of(m) for m in router.members]
        assert hashers[0] is hashers[1] is not None and hashers[2] is None
    finally:
        await router.aclose()


def test_an_engine_model_that_cannot_load_stops_start_up(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ConfigError, match=r"upstreams\[\]\.engine_model .*no-such-model"):
        PrefixRouting.from_settings(settings(tmp_path, missing))


# -- the feed --------------------------------------------------------------------------------


async def test_an_upstream_that_is_no_strata_engine_is_logged_once_and_scores_nothing(
    smollm2_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with MockUpstream("plain", models=("m",)) as mock:
        config = settings(tmp_path, str(smollm2_folder))
        upstream = HttpUpstream(config.upstreams[0].model_copy(update={"url": mock.url}))
        router = Router([upstream], config.routing, prefix=PrefixRouting.from_settings(config))
        try:
            with caplog.at_level(logging.WARNING):
                await router.prefix.refresh()  # not started: refresh does nothing
                router.prefix.start(lambda: router.members)
                await router.prefix.refresh()
                await router.prefix.refresh()
            assert mock.count("/v1/kv/events") >= 2
            assert caplog.text.count("cannot read the KV events of upstream r0") == 1
            assert router.prefix.index.known("r0") is None
        finally:
            await router.aclose()


# -- metrics ---------------------------------------------------------------------------------


def test_the_collector_exports_each_upstreams_counts() -> None:
    prefix = PrefixRouting(RoutingSettings(), {})
    view = prefix.index.view("a")
    view.block_size, view.blocks = 16, {1, 2, 3}
    registry = CollectorRegistry()
    registry.register(PrefixRoutingCollector(prefix.snapshot))
    text = generate_latest(registry).decode()
    assert 'strata:routing_prefix_index_blocks{upstream="a"} 3.0' in text
    assert 'strata:routing_prefix_decisions_total{outcome="cached",upstream="a"} 0.0' in text
    assert "strata:routing_prefix_hit_blocks_total" in text


# -- the built-in engine ---------------------------------------------------------------------


@pytest.fixture
async def builtin(tiny_llama_folder: Path, tmp_path: Path) -> AsyncIterator[EngineBinding]:
    engine = make_engine(tiny_llama_folder, tmp_path / "cache")
    await engine.start()
    yield EngineBinding(build_engine_app(engine, TOKEN, manage_engine=False), TOKEN, MODEL)
    await engine.stop()


async def test_the_builtin_engine_is_read_in_process_beside_remote_engines(
    builtin: EngineBinding, tiny_llama_folder: Path, tmp_path: Path
) -> None:
    with MockUpstream("remote", models=(MODEL,)) as remote:
        remote_settings = {"name": "remote", "url": remote.url, "models": [MODEL],
                           "engine_model": str(tiny_llama_folder)}  # fmt: skip
        config = Settings(data_dir=tmp_path, engine={"model": str(tiny_llama_folder)},
                          upstreams=[remote_settings])  # fmt: skip
        router = Router.from_settings(config, engine=builtin)
        try:
            engine, _ = router.members
            assert engine.name == "engine" and router.prefix.hasher_of(engine) is not None
            router.prefix.start(lambda: router.members)
            await router.prefix.refresh()
            view = router.prefix.index.known("engine")
            assert view is not None and view.block_size == 16
            prompt = list(range(1, 70))
            call = UpstreamCall("/completions", {"model": MODEL, "prompt": prompt,
                                                 "max_tokens": 1}, False, "r", 1e12)  # fmt: skip
            reply = await engine.upstream.send(call, asyncio.get_running_loop().time() + 30)
            assert reply.status == 200
            await router.prefix.refresh()
            assert set(prefix_hashes(prompt, 16)) <= view.blocks
        finally:
            await router.aclose()
