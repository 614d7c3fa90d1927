"""`strata` commands as a user runs them, in-process, against the test database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from typer.testing import CliRunner, Result


def store_cli(app: typer.Typer, pg_dsn: str, data_dir: Path) -> Callable[..., Result]:
    """`invoke(*args)` runs `app` with args, its store at `pg_dsn`, no config file; call it
    from a folder without a ./strata.yaml."""
    runner = CliRunner()
    env = {"STRATA_STORE__DSN": pg_dsn, "STRATA_DATA_DIR": str(data_dir), "STRATA_CONFIG": None}

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), env=env)

    return invoke


def ok(result: Result) -> str:
    """The command's stdout, once it exited 0 (else its output in the failure)."""
    assert result.exit_code == 0, result.output
    return result.stdout
