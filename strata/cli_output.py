"""How the `strata` commands over the store (keys, tenants, usage, logs) run and report: open
the store, do one thing, print JSON or a table; a failure is one red line on stderr and an exit
status (`EXIT_BAD_INPUT` for a bad setting or argument, `EXIT_FAILED` for anything else).
Kept apart from `strata.cli` so command modules import it without importing each other."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import psycopg
import typer

from strata.cli_options import EXIT_BAD_INPUT, EXIT_FAILED, settings_from
from strata.config import Settings
from strata.errors import ConfigError, InvalidRequestError, StrataError
from strata.store.database import Database

T = TypeVar("T")


def run_on_store(config: Path | None, action: Callable[[Database], Awaitable[T]]) -> T:
    """Open the store, run `action`, close it; errors become one line and an exit status."""
    try:
        return asyncio.run(_with_database(settings_from(config), action))
    except (InvalidRequestError, ConfigError) as exc:
        fail(exc.message, EXIT_BAD_INPUT)
    except StrataError as exc:
        fail(exc.message, EXIT_FAILED)
    except psycopg.Error as exc:
        fail(f"PostgreSQL: {str(exc).strip().splitlines()[0]}", EXIT_FAILED)


async def _with_database(settings: Settings, action: Callable[[Database], Awaitable[T]]) -> T:
    async with Database(settings, pool_size=1) as database:
        return await action(database)


def fail(message: str, code: int) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns, two spaces apart; `(none)` for no rows."""
    if not rows:
        typer.echo("(none)")
        return
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    for line in (headers, *rows):
        typer.echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
