"""What `strata plan` commands share beyond `strata.cli_options`: output as text or JSON, and
one-line failures."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer


def emit(document: dict[str, Any], lines: list[str], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(document, indent=2))
    else:
        typer.echo("\n".join(lines))


def fail(message: str, code: int) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)
