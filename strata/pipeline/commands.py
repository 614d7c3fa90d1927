"""`strata pipeline add|status|backfill|run|reindex|delete-tenant|include-tenant`: CDC sources
from the command line.

- `add` checks a new source against its primary (wal_level, table, columns, replica identity)
  and appends it to the YAML config file.
- `status` shows, per source: the worker that owns it and since when, slot lag, last commit
  applied, freshness p50/p95/p99, dead letters, documents and chunks.
- `backfill` re-snapshots sources (new slot, every row indexed, stale documents dropped);
  `run` streams them until interrupted (it backfills first when needed). Several `run`s (and
  `strata serve`s) share the sources: each source is streamed by one of them at a time
  (`strata.pipeline.ownership`); `backfill` refuses a source a running worker owns.
- `reindex` re-embeds a source's stored chunks after a `pipeline.embedder` change, beside the
  old vectors, and switches to them in one transaction (`strata.pipeline.reindex`).
- `delete-tenant` deletes a tenant's documents, chunks and dead letters from the index and, by
  default, keeps its rows out from then on; `include-tenant` lifts that (`strata.pipeline.
  tenants`).
- `quarantine list|release` shows the chunks the guard held back from retrieval as likely
  prompt injection, and releases one after review (`strata.pipeline.quarantine`).

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

from strata.cli_options import EXIT_BAD_INPUT, EXIT_FAILED, ConfigOption, JsonOption
from strata.config import (
    DEFAULT_CONFIG_FILE,
    PipelineSourceSettings,
    Settings,
    config_file_path,
    describe_validation_error,
    load_settings,
    read_yaml,
)
from strata.errors import ConfigError, InvalidRequestError, StrataError
from strata.pipeline.ownership import Owner, owning
from strata.pipeline.quarantine import QuarantinedChunk, quarantined, release
from strata.pipeline.reindex import ReindexResult
from strata.pipeline.status import SourceReport, source_report
from strata.pipeline.tenants import TenantDeletion, delete_tenant, include_tenant
from strata.store.database import Database

pipeline_app = typer.Typer(
    help="CDC sources: PostgreSQL changes → embeddings → pgvector.", no_args_is_help=True
)

SourceOption = Annotated[
    list[str] | None, typer.Option("--source", "-s", help="Only this source (repeatable).")
]
CsvOption = Annotated[str, typer.Option(help="Comma-separated column names.")]
TenantOption = Annotated[
    str, typer.Option(help="The tenant, as the sources' tenant column (or `tenant`) names it.")
]


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
    """Owner, slot lag, last commit applied, freshness percentiles and dead letters per
    source."""
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
    documents gone from the table removed. Refused for a source a running `strata pipeline
    run` (or `strata serve`) owns: stop it first."""
    from strata.pipeline.chunker import Chunker
    from strata.pipeline.embedder import build_embedder, count_tokens
    from strata.pipeline.screen import screen_for
    from strata.pipeline.source import SourcePipeline

    settings = _settings(config)
    with _failures(), Database(settings) as database:
        embedder = build_embedder(settings.pipeline.embedder)
        chunker = Chunker(count_tokens, settings.pipeline.chunk_tokens)
        screen = screen_for(settings.guard)
        for entry in _sources(settings, source):
            if entry.kind == "debezium":
                typer.echo(
                    f"{entry.name}: kind debezium: Debezium's snapshot is its backfill (start "
                    "one in Debezium, e.g. an execute-snapshot signal; `strata pipeline run` "
                    "indexes its events and then drops documents it did not rewrite)"
                )
                continue
            with owning(database.conninfo, entry.name, settings.pipeline.worker) as ownership:
                pipeline = SourcePipeline(
                    entry,
                    settings.pipeline,
                    database.conninfo,
                    embedder,
                    chunker,
                    screen=screen,
                    ownership=ownership,
                )
                try:
                    pipeline.open()
                    result = pipeline.backfill()
                finally:
                    pipeline.close()
            stats = result.stats
            typer.echo(
                f"{entry.name}: {result.rows} rows, {stats.chunks} chunks ({stats.embedded} "
                f"embedded, {stats.reused} reused, {stats.quarantined} quarantined), "
                f"{result.stale_removed} stale removed, {result.seconds:.1f} s"
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
        names = [s.name for s in _sources(settings, source)] if source else None
        service = PipelineService(settings, database.conninfo, embedder, sources=names)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: service.stop(timeout_s=0))
        service.start()
        service.wait()
    if service.failed:
        _fail("; ".join(f"{k}: {v}" for k, v in service.failed.items()), EXIT_FAILED)


@pipeline_app.command("reindex")
def reindex(
    source: Annotated[str, typer.Option("--source", "-s", help="The source to re-embed.")],
    config: ConfigOption = None,
) -> None:
    """Re-embed a source with pipeline.embedder after a model change, without a gap.

    The stored chunks are embedded again (the primary is not read) beside the old vectors,
    which keep serving retrieval meanwhile; one transaction switches to the new ones; the old
    are dropped. Safe to stop: run it again to resume. After it switches, restart `strata
    serve` / `strata pipeline run` with the new pipeline.embedder (a process still on the old
    model stops at its next write)."""
    from strata.pipeline.embedder import build_embedder
    from strata.pipeline.reindex import Reindexer

    settings = _settings(config)
    (entry,) = _sources(settings, [source])
    with _failures(), Database(settings) as database, database.connect() as conn:
        conn.autocommit = True
        embedder = build_embedder(settings.pipeline.embedder)
        result = Reindexer(conn, entry.name, embedder).run()
    typer.echo(_describe_reindex(result))


@pipeline_app.command("delete-tenant")
def delete_tenant_command(
    tenant: TenantOption,
    source: SourceOption = None,
    exclude: Annotated[
        bool,
        typer.Option(
            "--exclude/--no-exclude",
            help="Keep the tenant's rows still in the source tables out of the index from now "
            "on (default). With --no-exclude they are indexed again on their next change, and "
            "all of them by the next backfill.",
        ),
    ] = True,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Delete a tenant's indexed documents, chunks and dead letters; print the counts.

    One transaction, over every source (or those named), every model's vectors. The source
    tables are not touched: see --exclude for what becomes of the rows still there."""
    settings = _settings(config)
    names = [s.name for s in _sources(settings, source)] if source else None
    with _failures(), Database(settings) as database, database.connect() as conn:
        conn.autocommit = True
        deletion = delete_tenant(conn, tenant, names, exclude=exclude)
    if as_json:
        typer.echo(json.dumps({**asdict(deletion), "note": deletion.note}, indent=2))
        return
    typer.echo(_describe_deletion(deletion))


@pipeline_app.command("include-tenant")
def include_tenant_command(
    tenant: TenantOption, source: SourceOption = None, config: ConfigOption = None
) -> None:
    """Let a tenant that `delete-tenant` excluded be indexed again.

    Lifts the exclusion for every source (or those named): its rows are indexed again on their
    next change; `strata pipeline backfill` indexes them all at once."""
    settings = _settings(config)
    names = [s.name for s in _sources(settings, source)] if source else None
    with _failures(), Database(settings) as database, database.connect() as conn:
        conn.autocommit = True
        lifted = include_tenant(conn, tenant, names)
    if not lifted:
        typer.echo(f"tenant '{tenant}' was not excluded from {names or 'any source'}")
        return
    typer.echo(
        f"lifted {lifted} exclusion(s) of tenant '{tenant}'; its rows are indexed on their next "
        "change, or all at once with `strata pipeline backfill`"
    )


quarantine_app = typer.Typer(
    help="Chunks the guard held back from retrieval as likely prompt injection.",
    no_args_is_help=True,
)
pipeline_app.add_typer(quarantine_app, name="quarantine")


@quarantine_app.command("list")
def quarantine_list(
    source: SourceOption = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's chunks.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (1 to 1000).")] = 100,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Quarantined chunks (guard policy `documents: block`): never retrieved until released."""
    settings = _settings(config)
    names = [s.name for s in _sources(settings, source)] if source else None
    with _failures(), Database(settings) as database, database.connect() as conn:
        conn.autocommit = True
        chunks = quarantined(conn, sources=names, tenant=tenant, limit=limit)
    if as_json:
        typer.echo(json.dumps([asdict(c) for c in chunks], default=str, indent=2))
        return
    typer.echo("\n".join(map(_describe_quarantined, chunks)) or "no quarantined chunks")


@quarantine_app.command("release")
def quarantine_release(
    source: Annotated[str, typer.Option("--source", "-s", help="The chunk's source.")],
    key: Annotated[str, typer.Option(help="The document's key, as `list` shows it.")],
    chunk: Annotated[
        int | None, typer.Option(help="Only this chunk (default: all of the document's).")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Release reviewed chunks: retrievable at once, until their text changes (a changed text
    is scanned again)."""
    settings = _settings(config)
    (entry,) = _sources(settings, [source])
    with _failures(), Database(settings) as database, database.connect() as conn:
        conn.autocommit = True
        released = release(conn, entry.name, key, chunk, actor="cli")
    if not released:
        which = f"chunk {chunk} of " if chunk is not None else ""
        _fail(
            f"no quarantined {which}document {key!r} in source '{source}'; see "
            "`strata pipeline quarantine list`",
            EXIT_FAILED,
        )
    typer.echo(f"released {source}/{key} chunk(s) {released}: retrievable now")


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
    except (ConfigError, InvalidRequestError) as exc:
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
    reader = "consumer:       " if r.consumer is not None else "slot:           "
    if r.consumer is not None:
        lag = (
            f"{r.consumer.total} messages behind ({r.consumer.pending} not yet delivered, "
            f"{r.consumer.unacknowledged} delivered and not yet indexed)"
        )
    elif r.slot is not None:
        lag = f"{r.slot.lag_bytes or 0} bytes behind, {'active' if r.slot.active else 'idle'}"
    else:
        lag = r.slot_error or "no slot (run or backfill to create it)"
    p50, p95, p99 = (_ms(s) for s in (r.freshness_p50_s, r.freshness_p95_s, r.freshness_p99_s))
    return "\n".join(
        [
            f"{r.name} → collection {r.collection}",
            f"  owner:           {_describe_owner(r.owner)}",
            f"  {reader} {lag}",
            f"  last commit:     {r.last_commit_at or '-'} (applied {r.last_applied_at or '-'}, "
            f"lsn {r.applied_lsn or '-'})",
            f"  freshness:       p50 {p50}, p95 {p95}, p99 {p99} "
            f"over {r.freshness_samples} transactions",
            f"  index:           {r.documents} documents, {r.chunks} chunks",
            f"  dead letters:    {r.dead_letters}",
            f"  excluded:        {', '.join(r.excluded_tenants) or '-'}",
            f"  backfilled:      {r.backfilled_at or 'not yet'}",
        ]
    )


def _describe_owner(owner: Owner | None) -> str:
    if owner is None:
        return "none yet (no `strata pipeline run` has streamed it)"
    changes = f"{owner.acquisitions - 1} hand-over(s)"
    if owner.live:
        return f"worker {owner.worker} since {owner.since} ({changes})"
    return f"none: worker {owner.worker} (owner since {owner.since}) is gone ({changes})"


def _describe_reindex(r: ReindexResult) -> str:
    dropped = f"{r.dropped} vectors of other models dropped"
    if not r.switched:
        return f"{r.source}: already serves {r.new_model}; nothing to re-embed, {dropped}"
    return (
        f"{r.source}: switched from {r.old_model} to {r.new_model}; {r.embedded} chunk texts "
        f"embedded ({r.already_built} chunks built by an earlier run), {dropped}, "
        f"{r.seconds:.1f} s.\nRestart `strata serve` / `strata pipeline run` with this "
        f"pipeline.embedder now: a process still embedding with {r.old_model} stops at its "
        "next write, and retrieval through it finds nothing."
    )


def _describe_deletion(d: TenantDeletion) -> str:
    return (
        f"deleted tenant '{d.tenant}' from {', '.join(d.sources) or 'no source'}: "
        f"{d.documents} documents, {d.chunks} chunks, {d.dead_letters} dead letters.\n{d.note}"
    )


def _describe_quarantined(c: QuarantinedChunk) -> str:
    preview = " ".join(c.content.split())[:160]
    return (
        f"{c.source}/{c.key}#{c.chunk_no}  tenant {c.tenant}  score {c.score:.2f}  "
        f"{', '.join(c.categories) or 'injection'}  {c.updated_at:%Y-%m-%d %H:%M}\n  {preview}"
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms"
