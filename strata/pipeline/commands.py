"""`strata pipeline add|status|backfill|run`: CDC sources from the command line.

- `add` checks a new source against its primary (wal_level, table, columns, replica identity)
  and appends it to the YAML config file.
- `status` shows, per source: slot lag, last commit applied, freshness p50/p95/p99, dead
  letters, documents and chunks.
- `backfill` re-snapshots sources (new slot, every row indexed, stale documents dropped);
  `run` streams them until interrupted (it backfills first when needed).

A bad setting prints one line naming it and exits 2; a source that cannot be used exits 1.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import psycopg
import psycopg2
import typer
import yaml
from pydantic import ValidationError

from strata.cli_options import EXIT_BAD_INPUT, EXIT_FAILED, ConfigOption
from strata.config import (
    DEFAULT_CONFIG_FILE,
    PipelineSourceSettings,
    Settings,
    config_file_path,
    describe_validation_error,
    load_settings,
    read_yaml,
)
from strata.errors import ConfigError, StrataError
from strata.pipeline.status import SourceReport, source_report
from strata.store.database import Database

pipeline_app = typer.Typer(
    help="CDC sources: PostgreSQL changes → embeddings → pgvector.", no_args_is_help=True
)

SourceOption = Annotated[
    list[str] | None, typer.Option("--source", "-s", help="Only this source (repeatable).")
]
CsvOption = Annotated[str, typer.Option(help="Comma-separated column names.")]


@pipeline_app.command("add")
def add(
    name: Annotated[str, typer.Option(help="Source name (slot/publication strata_<name>).")],
    dsn: Annotated[str, typer.Option(help="Primary database DSN (wal_level=logical).")],
    table: Annotated[str, typer.Option(help="Table, optionally schema-qualified.")],
    collection: Annotated[str, typer.Option(help="Retrieval collection.")],
    text_columns: CsvOption = "",
    template: Annotated[str | None, typer.Option(help="Instead of --text-columns.")] = None,
    metadata_columns: CsvOption = "",
    tenant_column: Annotated[str | None, typer.Option(help="Column naming the tenant.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Instead: one tenant owns all.")] = None,
    primary_key: CsvOption = "",
    row_filter: Annotated[str | None, typer.Option(help="SQL condition on the row.")] = None,
    check: Annotated[bool, typer.Option(help="Check the table on the primary first.")] = True,
    config: ConfigOption = None,
) -> None:
    """Check a new source and append it to the config file's pipeline.sources."""
    fields: dict[str, Any] = {
        "name": name, "dsn": dsn, "table": table, "collection": collection,
        "text_columns": _csv(text_columns), "template": template,
        "metadata_columns": _csv(metadata_columns), "tenant_column": tenant_column,
        "tenant": tenant, "primary_key": _csv(primary_key), "row_filter": row_filter,
    }  # fmt: skip
    source = _validated_source(fields)
    path = config or config_file_path() or DEFAULT_CONFIG_FILE
    data = read_yaml(path) if path.is_file() else {}
    sources = data.setdefault("pipeline", {}).setdefault("sources", [])
    sources.append({k: v for k, v in fields.items() if v not in (None, [], "")})
    _check_settings(data)
    if check:
        with _failures():
            _check_primary(source)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    typer.echo(f"added pipeline source '{name}' to {path}; start it with `strata pipeline run`")


@pipeline_app.command("status")
def status(
    config: ConfigOption = None,
    source: SourceOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Slot lag, last commit applied, freshness percentiles and dead letters per source."""
    settings = _settings(config)
    with _failures(), Database(settings) as database, database.connect() as conn:
        conn.autocommit = True
        reports = [
            source_report(conn, s, settings.pipeline.freshness_samples)
            for s in _sources(settings, source)
        ]
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in reports], default=str, indent=2))
        return
    for report in reports:
        typer.echo(_describe(report))


@pipeline_app.command("backfill")
def backfill(config: ConfigOption = None, source: SourceOption = None) -> None:
    """Re-snapshot sources: new slot, every row indexed (only changed chunks re-embedded),
    documents gone from the table removed. Stop `strata pipeline run` for them first."""
    from strata.pipeline.chunker import Chunker
    from strata.pipeline.embedder import build_embedder, count_tokens
    from strata.pipeline.source import SourcePipeline

    settings = _settings(config)
    with _failures(), Database(settings) as database:
        embedder = build_embedder(settings.pipeline.embedder)
        chunker = Chunker(count_tokens, settings.pipeline.chunk_tokens)
        for entry in _sources(settings, source):
            pipeline = SourcePipeline(
                entry, settings.pipeline, database.conninfo, embedder, chunker
            )
            try:
                pipeline.open()
                result = pipeline.backfill()
            finally:
                pipeline.close()
            stats = result.stats
            typer.echo(
                f"{entry.name}: {result.rows} rows, {stats.chunks} chunks ({stats.embedded} "
                f"embedded, {stats.reused} reused), {result.stale_removed} stale removed, "
                f"{result.seconds:.1f} s"
            )


@pipeline_app.command("run")
def run(config: ConfigOption = None, source: SourceOption = None) -> None:
    """Stream sources into the index until interrupted (Ctrl-C / SIGTERM)."""
    from strata.pipeline.embedder import build_embedder
    from strata.pipeline.service import PipelineService

    settings = _settings(config)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    with _failures(), Database(settings) as database:
        embedder = build_embedder(settings.pipeline.embedder)
        service = PipelineService(
            settings,
            database.conninfo,
            embedder,
            sources=[s.name for s in _sources(settings, source)],
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: service.stop(timeout_s=0))
        service.start()
        service.wait()
    if service.failed:
        _fail("; ".join(f"{k}: {v}" for k, v in service.failed.items()), EXIT_FAILED)


# -- helpers ------------------------------------------------------------------------------------


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _validated_source(fields: dict[str, Any]) -> PipelineSourceSettings:
    try:
        return PipelineSourceSettings(**fields)
    except ValidationError as exc:
        message = describe_validation_error(exc).replace(
            "Invalid strata settings", "Invalid source"
        )
        _fail(message, EXIT_BAD_INPUT)


def _check_settings(data: dict[str, Any]) -> None:
    try:
        Settings(**data)
    except ValidationError as exc:
        _fail(describe_validation_error(exc), EXIT_BAD_INPUT)


def _check_primary(source: PipelineSourceSettings) -> None:
    from strata.pipeline.primary import check_wal_level, describe_table, key_columns

    with psycopg.connect(source.dsn.get_secret_value(), connect_timeout=10) as conn:
        check_wal_level(conn)
        key = key_columns(describe_table(conn, source.table), source)
    typer.echo(f"{source.table}: key {list(key)}, replication ready")


def _settings(config: Path | None) -> Settings:
    if config is not None and not config.is_file():
        _fail(f"--config {config}: no such file.", EXIT_BAD_INPUT)
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        _fail(exc.message, EXIT_BAD_INPUT)
    if not settings.pipeline.sources:
        _fail("no pipeline.sources configured; add one with `strata pipeline add`", EXIT_BAD_INPUT)
    return settings


def _sources(settings: Settings, names: list[str] | None) -> list[PipelineSourceSettings]:
    known = {s.name for s in settings.pipeline.sources}
    unknown = sorted(set(names or []) - known)
    if unknown:
        _fail(
            f"--source: no pipeline source named {unknown}; configured: {sorted(known)}",
            EXIT_BAD_INPUT,
        )
    return [s for s in settings.pipeline.sources if not names or s.name in names]


@contextmanager
def _failures() -> Iterator[None]:
    """strata and database errors as one line and an exit status."""
    try:
        yield
    except ConfigError as exc:
        _fail(exc.message, EXIT_BAD_INPUT)
    except StrataError as exc:
        _fail(exc.message, EXIT_FAILED)
    except (psycopg.Error, psycopg2.Error) as exc:
        _fail(f"PostgreSQL: {str(exc).strip().splitlines()[0]}", EXIT_FAILED)


def _fail(message: str, code: int) -> NoReturn:
    typer.secho(message, err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _describe(report: SourceReport) -> str:
    r = report
    if r.slot is not None:
        lag = f"{r.slot.lag_bytes or 0} bytes behind, {'active' if r.slot.active else 'idle'}"
    else:
        lag = r.slot_error or "no slot (run or backfill to create it)"
    p50, p95, p99 = (_ms(s) for s in (r.freshness_p50_s, r.freshness_p95_s, r.freshness_p99_s))
    return "\n".join(
        [
            f"{r.name} → collection {r.collection}",
            f"  slot:            {lag}",
            f"  last commit:     {r.last_commit_at or '-'} (applied {r.last_applied_at or '-'}, "
            f"lsn {r.applied_lsn or '-'})",
            f"  freshness:       p50 {p50}, p95 {p95}, p99 {p99} "
            f"over {r.freshness_samples} transactions",
            f"  index:           {r.documents} documents, {r.chunks} chunks",
            f"  dead letters:    {r.dead_letters}",
            f"  backfilled:      {r.backfilled_at or 'not yet'}",
        ]
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"
