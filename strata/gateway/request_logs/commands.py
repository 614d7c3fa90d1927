"""`strata logs search|show|enable|disable|tenants|delete|purge`: request logs from the command
line, over strata's store like `strata keys` (a running gateway is not needed; one that runs
picks up an opt-in change within `request_logs.refresh_s`). Bad input prints one line and
exits 2; anything else that fails prints one line and exits 1.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated

import typer
from fastapi.encoders import jsonable_encoder

from strata.cli_options import ConfigOption, JsonOption, settings_from
from strata.cli_output import echo_json, echo_table, run_on_store
from strata.gateway.request_logs.routes import detail_json
from strata.gateway.request_logs.store import (
    MAX_LIMIT,
    LogDetail,
    LogQuery,
    LogSummary,
    check_query,
    delete_tenant_logs,
    find,
    purge_expired,
    search,
)
from strata.gateway.request_logs.tenants import (
    MAX_RETENTION_DAYS,
    TenantLogging,
    list_settings,
    set_setting,
)
from strata.store.database import Database

ACTOR = "cli"
logs_app = typer.Typer(
    help="Request logs of opted-in tenants: search, show, opt in/out, delete.",
    no_args_is_help=True,
)
_DAY_OR_TIME = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]
TenantArgument = Annotated[str, typer.Argument(help="The tenant (`strata tenants list`).")]


@logs_app.command("search")
def logs_search(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this strata user (the key's).")] = None,
    end_user: Annotated[
        str | None, typer.Option(help="Only this end user (OpenAI's `user` field).")
    ] = None,
    session: Annotated[str | None, typer.Option(help="Only this x-strata-session.")] = None,
    q: Annotated[
        str | None,
        typer.Option("--query", "-q", help='Full text: words, "a phrase", or, -not.'),
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(formats=_DAY_OR_TIME, help="From this UTC time.")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(formats=_DAY_OR_TIME, help="Before this UTC time.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="Most rows.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="The next page, as printed.")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Logs matching every filter given, newest first."""
    query = LogQuery(tenant, user, end_user, session, q, _utc(since), _utc(until), limit, cursor)
    page = run_on_store(config, lambda db: search(db.pool, check_query(query)))
    if as_json:
        data = [jsonable_encoder(asdict(s)) for s in page.data]
        echo_json({"data": data, "next_cursor": page.next_cursor})
        return
    headers = ("TIME", "REQUEST ID", "TENANT", "USER", "END USER", "SESSION", "MODEL", "STATUS",
               "TOKENS", "SCORES", "PROMPT")  # fmt: skip
    echo_table(headers, [_summary_line(s) for s in page.data])
    if page.next_cursor:
        typer.echo(f"\nmore: --cursor {page.next_cursor}")


@logs_app.command("show")
def logs_show(
    request_id: Annotated[str, typer.Argument(help="The x-request-id of the request.")],
    tenant: Annotated[str | None, typer.Option(help="The request's tenant.")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """One log in full: the redacted messages and answer, usage and feedback."""
    detail = run_on_store(config, lambda db: find(db.pool, request_id, tenant))
    if as_json:
        echo_json(detail_json(detail))
        return
    for line in _detail_lines(detail):
        typer.echo(line)


@logs_app.command("enable")
def logs_enable(
    tenant: TenantArgument,
    retention_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_RETENTION_DAYS,
            help="Keep this tenant's logs this many days (default: request_logs.retention_days).",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Log the tenant's requests from now on (redacted), kept for its retention."""
    setting = run_on_store(
        config, lambda db: set_setting(db.pool, tenant, True, retention_days, actor=ACTOR)
    )
    typer.echo(f"Request logs on for {_describe(setting)}.")


@logs_app.command("disable")
def logs_disable(tenant: TenantArgument, config: ConfigOption = None) -> None:
    """Stop logging the tenant's requests; its stored logs stay until their retention ends
    (`strata logs delete` deletes them now)."""
    setting = run_on_store(config, lambda db: _disable(db, tenant))
    typer.echo(f"Request logs off for {_describe(setting)}.")


async def _disable(db: Database, tenant: str) -> TenantLogging:
    """Off, keeping the tenant's retention for the logs it already has."""
    current = {s.tenant: s for s in await list_settings(db.pool)}.get(tenant)
    days = current.retention_days if current else None
    return await set_setting(db.pool, tenant, False, days, actor=ACTOR)


@logs_app.command("tenants")
def logs_tenants(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Tenants with a request-log setting (every other tenant is not logged)."""
    settings = run_on_store(config, lambda db: list_settings(db.pool))
    if as_json:
        echo_json([jsonable_encoder(asdict(s)) for s in settings])
        return
    lines = [(s.tenant, "on" if s.enabled else "off", _or_default(s.retention_days),
              _iso(s.updated_at)) for s in settings]  # fmt: skip
    echo_table(("TENANT", "LOGGED", "RETENTION DAYS", "UPDATED"), lines)


@logs_app.command("delete")
def logs_delete(
    tenant: Annotated[str, typer.Option(help="Delete every log and score of this tenant.")],
    config: ConfigOption = None,
) -> None:
    """Delete a tenant's logs and feedback now (its setting stays: disable it first to log
    nothing more)."""
    logs, scores = run_on_store(config, lambda db: delete_tenant_logs(db.pool, tenant))
    typer.echo(f"Deleted {logs} logs and {scores} feedback scores of tenant {tenant}.")


@logs_app.command("purge")
def logs_purge(config: ConfigOption = None) -> None:
    """Delete every log past its retention now (the gateway also does it every
    request_logs.purge_interval_s)."""

    async def purge(db: Database) -> int:
        days = settings_from(config).request_logs.retention_days
        return await purge_expired(db.pool, days, lambda: datetime.now(UTC))

    typer.echo(f"Purged {run_on_store(config, purge)} rows past their retention.")


def _summary_line(s: LogSummary) -> tuple[str, ...]:
    scores = ",".join(f"{k}={v:g}" for k, v in sorted(s.scores.items()))
    prompt = " ".join(s.prompt_preview.split())[:40]
    return (
        _iso(s.created_at), s.request_id, s.tenant, s.user, s.end_user or "-", s.session or "-",
        s.model, str(s.status), str(s.prompt_tokens + s.completion_tokens), scores or "-",
        prompt or "-",
    )  # fmt: skip


def _detail_lines(d: LogDetail) -> list[str]:
    s = d.summary
    lines = [
        f"request {s.request_id}  {_iso(s.created_at)}  {s.route}  status {s.status}",
        f"tenant {s.tenant}  user {s.user}  end user {s.end_user or '-'}  "
        f"session {s.session or '-'}  key {s.key_id}",
        f"model {s.model}  tokens {s.prompt_tokens}+{s.completion_tokens}  "
        f"cost ${s.cost_usd:.6f}  duration {s.duration_ms:.0f} ms"
        + ("  (truncated)" if s.truncated else ""),
        "",
    ]
    lines += [f"[{m['role']}] {m['content']}" for m in d.messages]
    lines += ["", f"[answer] {d.response}"]
    lines += [f"feedback {f.name}={f.score:g}" + (f": {f.comment}" if f.comment else "")
              for f in d.feedback]  # fmt: skip
    return lines


def _describe(setting: TenantLogging) -> str:
    return f"tenant {setting.tenant} (retention {_or_default(setting.retention_days)} days)"


def _or_default(days: int | None) -> str:
    return "default" if days is None else str(days)


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def _iso(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
