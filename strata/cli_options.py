"""What every `strata` command shares: the --config and --json options, exit codes, and
loading the settings a command was pointed at. Kept apart from `strata.cli` so command
modules (keys, plan, pipeline, ...) import it without importing each other."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strata.config import Settings, load_settings
from strata.errors import ConfigError

EXIT_BAD_INPUT = 2  # a bad setting, option or argument
EXIT_FAILED = 1  # anything else that stopped the command

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
    """The settings with `config` as the YAML file; `ConfigError` names what is wrong."""
    if config is not None and not config.is_file():
        raise ConfigError(f"--config {config}: no such file.")
    return load_settings(config)
