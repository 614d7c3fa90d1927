"""`strata deploy ray` as a user runs it: its help, and one clear line (no traceback) for bad
options, settings a cluster cannot run, and a Ray that is not there."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from strata.cli import app

ENV = {"STRATA_CONFIG": None, "STRATA_STORE__DSN": None, "STRATA_REDIS_URL": None}


def deploy(tmp_path: Path, *args: str, **config: Any) -> Result:
    path = tmp_path / "strata.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), **config}))
    return CliRunner().invoke(
        app, ["deploy", "ray", "--config", str(path), *args], env={**ENV, "COLUMNS": "300"}
    )


def refused(result: Result, code: int) -> str:
    """The command's message, once it exited with `code` on purpose (not a traceback)."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    return " ".join(result.output.replace("│", " ").split())


def test_help_documents_the_options() -> None:
    result = CliRunner().invoke(app, ["deploy", "ray", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--config", "--address", "--replicas", "--gateway-replicas", "--http-port"):
        assert option in result.output
    assert "store.dsn" in result.output and "redis_url" in result.output


@pytest.mark.parametrize("option", ["--replicas", "--gateway-replicas"])
def test_a_replica_count_below_one_is_a_usage_error(tmp_path: Path, option: str) -> None:
    message = refused(deploy(tmp_path, option, "0"), 2)
    assert f"Invalid value for '{option}': Input should be greater than or equal to 1" in message


def test_bad_pool_bounds_in_the_file_name_the_key(tmp_path: Path) -> None:
    engines = [{"name": "engine", "min_replicas": 3, "max_replicas": 1}]
    message = refused(deploy(tmp_path, deploy={"ray": {"engines": engines}}), 2)
    assert (
        "deploy.ray.engines" in message and "max_replicas (1) is below min_replicas (3)" in message
    )


def test_a_cluster_without_a_shared_database_is_refused(tmp_path: Path) -> None:
    message = refused(deploy(tmp_path, redis_url="redis://127.0.0.1:1/0"), 2)
    assert "store.dsn is empty" in message and "STRATA_STORE__DSN" in message


def test_no_ray_at_the_address_is_one_clear_line(tmp_path: Path, pg_dsn: str) -> None:
    pytest.importorskip("ray")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"  # nobody listens once closed
    shared = {"store": {"dsn": pg_dsn}, "redis_url": "redis://127.0.0.1:1/0"}
    message = refused(deploy(tmp_path, "--address", address, **shared), 1)
    assert f"No Ray reachable at {address}" in message and "ray start --head" in message
    assert "first admin key (shown once" in message  # the store was ready before Ray was asked
    again = refused(deploy(tmp_path, "--address", address, **shared), 1)
    assert "first admin key" not in again  # only ever once
    malformed = refused(deploy(tmp_path, "--address", "nowhere", **shared), 1)
    assert "Ray address 'nowhere' (--address or deploy.ray.address): expected 'auto'" in malformed
