from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from strata.bench.gateway import systems
from strata.bench.gateway.mock import Mock
from strata.bench.gateway.modes import MODES, PLAIN, STREAM
from strata.bench.gateway.run import Plan, measure, probe
from strata.bench.gateway.systems import (
    LITELLM_VENV,
    NEVER_BINDING_RPM,
    direct,
    litellm,
    litellm_config,
    postmaster_pids,
    strata,
    strata_config,
)
from strata.bench.gateway.wrk import lua_script
from tests.bench.gateway.conftest import needs_wrk
from tests.bench.gateway.fake_strata import KEY

MOCK = Mock("http://127.0.0.1:9", pid=1)


def test_direct_is_the_mock_itself(tmp_path: Path) -> None:
    with direct(MOCK, tmp_path) as endpoint:
        assert endpoint.chat_url(STREAM) == MOCK.chat_url(STREAM)
        assert endpoint.api_key is None and endpoint.pids == ()


def test_litellm_config_routes_each_mode_to_its_prefix_with_limits() -> None:
    config = litellm_config(MOCK, "sk-m")
    assert config["general_settings"] == {"master_key": "sk-m"}
    deployments = config["model_list"]
    assert isinstance(deployments, list)
    by_model = {d["model_name"]: d["litellm_params"] for d in deployments}
    assert by_model[PLAIN.model]["api_base"] == "http://127.0.0.1:9/plain/v1"
    assert by_model[STREAM.model]["model"] == f"openai/{STREAM.model}"
    assert all(p["rpm"] == NEVER_BINDING_RPM for p in by_model.values())


def test_postmaster_pids_reads_the_pid_files(tmp_path: Path) -> None:
    (tmp_path / "postgres").mkdir()
    (tmp_path / "postgres" / "postmaster.pid").write_text("6930\n/data\n1795963616\n")
    assert postmaster_pids(tmp_path) == [6930]
    assert postmaster_pids(tmp_path / "postgres" / "none") == []


def test_guard_path_names_the_stage_that_decides_the_benchmark_message() -> None:
    from strata.bench.gateway.systems import guard_path

    text = guard_path()
    assert text.startswith("on (defaults); the detector scores the message ")
    assert ("MiniLM runs on every request" in text) != ("MiniLM never runs" in text)


def test_strata_config_has_one_upstream_per_mode(tmp_path: Path) -> None:
    config = strata_config(MOCK, tmp_path, 8400, guard=False)
    assert config["gateway"] == {"engine": False}
    assert config["guard"] == {"enabled": False}
    assert strata_config(MOCK, tmp_path, 8400, guard=True)["guard"] == {"enabled": True}
    assert config["server"] == {"host": "127.0.0.1", "port": 8400}
    upstreams = config["upstreams"]
    assert isinstance(upstreams, list) and len(upstreams) == len(MODES)
    assert {u["url"] for u in upstreams} == {MOCK.base_url(m) for m in MODES}
    assert all(u["kind"] == "openai" for u in upstreams)


@pytest.mark.slow
@pytest.mark.skipif(
    not (LITELLM_VENV / "bin" / "litellm").exists() or shutil.which("taskset") is None,
    reason="needs .bench/litellm-venv (made by the first `strata bench gateway`) and taskset",
)
def test_litellm_proxies_both_modes(mock: Mock, tmp_path: Path) -> None:
    assert len(os.sched_getaffinity(0)) >= 2
    with litellm(mock, tmp_path) as endpoint:
        assert len(endpoint.pids) == 1
        for mode in MODES:
            probe(endpoint, mode)


@pytest.fixture
def fake_strata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`strata` replaced by tests/bench/gateway/fake_strata.py, same command line."""
    exe = tmp_path / "strata"
    script = Path(__file__).with_name("fake_strata.py")
    exe.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    exe.chmod(0o755)
    monkeypatch.setattr(systems, "STRATA_EXE", exe)
    return exe


@needs_wrk
def test_strata_launcher_starts_keys_and_measures(
    mock: Mock, fake_strata: Path, tmp_path: Path
) -> None:
    with strata(mock, tmp_path) as endpoint:
        assert endpoint.api_key == KEY and len(endpoint.pids) == 1  # the fake has no database
        for mode in MODES:
            probe(endpoint, mode)  # routed by model, with the key
        script = tmp_path / "s.lua"
        script.write_text(lua_script(PLAIN.request_body(), endpoint.api_key))
        cell = measure(mock, endpoint, PLAIN, script, 1, Plan(("strata",), (1,), 1, 0, 20))
    assert cell.wrk.requests > 10 and cell.wrk.errors.total == 0  # no 401s: the key was sent
    assert cell.gateway_cpu_ms_per_request is not None and cell.gateway_cpu_ms_per_request > 0
    config = yaml.safe_load((tmp_path / "strata.yaml").read_text())
    assert config["data_dir"] == str(tmp_path / "strata-data")
