"""What `strata plan` commands share: the --config and --json options, settings loading,
output, and one-line failures (exit 2 for bad input, 1 for anything else)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from strata.config import Settings, load_settings
from strata.errors import ConfigError

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML settings file. Default: $STRATA_CONFIG, else ./strata.yaml when present.",
        dir_okay=False,
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def settings_from(config: Path | None) -> Settings:
    if config is not None and not config.is_file():
        raise ConfigError(f"--config {config}: no such file.")
    return load_settings(config)


def emit(document: dict[str, Any], lines: list[str], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(document, indent=2))
    else:
        typer.echo("\n".join(lines))


def fail(message: str, code: int) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)
