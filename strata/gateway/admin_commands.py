"""`strata keys`, `strata tenants`, `strata usage`: admin commands over strata's store.

Each command opens the store the way `strata serve` does (the embedded PostgreSQL in
<data_dir>/postgres, attached to when `strata serve` already runs it, or `store.dsn`), applies
migrations, does one thing and exits. Bad input prints one line and exits 2; anything else
that fails (unknown key id, unreachable database) prints one line and exits 1. A new key is
printed exactly once; the store keeps only its hash.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from strata.cli_options import ConfigOption, JsonOption
from strata.cli_output import echo_json, echo_table, run_on_store
from strata.gateway.identity import IssuedKey, KeyInfo, KeyStore, TenantInfo
from strata.gateway.ledger import Concentration, ReportBy, UsageRow, concentration, usage_report
from strata.gateway.principal import Limits, Role
from strata.gateway.replica_time import ReplicaUsage, replica_time_report
from strata.store.database import Database

ACTOR = "cli"

keys_app = typer.Typer(help="Create, list, revoke and rotate API keys.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants: data-processing rules and limits.", no_args_is_help=True)
usage_app = typer.Typer(help="Who used what, from the usage ledger.", no_args_is_help=True)

RpmOption = Annotated[int | None, typer.Option(min=0, help="Requests per minute.")]
TpmOption = Annotated[int | None, typer.Option(min=0, help="Tokens (prompt+completion) per min.")]
ConcurrentOption = Annotated[int | None, typer.Option(min=0, help="Requests in flight at once.")]
DailyTokensOption = Annotated[int | None, typer.Option(min=0, help="Tokens per UTC day.")]
MonthlyTokensOption = Annotated[int | None, typer.Option(min=0, help="Tokens per UTC month.")]
DailyCostOption = Annotated[float | None, typer.Option(min=0, help="US dollars per UTC day.")]
MonthlyCostOption = Annotated[float | None, typer.Option(min=0, help="US dollars per UTC month.")]


# -- keys ---------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant the key belongs to (created if new).")],
    user: Annotated[str, typer.Option(help="User within the tenant (created if new).")],
    role: Annotated[Role, typer.Option(help="'admin' keys may manage keys and tenants.")] = "user",
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    concurrent: ConcurrentOption = None,
    daily_tokens: DailyTokensOption = None,
    monthly_tokens: MonthlyTokensOption = None,
    daily_cost: DailyCostOption = None,
    monthly_cost: MonthlyCostOption = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated; default: all.")] = None,
    collections: Annotated[str | None, typer.Option(help="Comma-separated; default: all.")] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, help="Default: never.")] = None,
    name: Annotated[str | None, typer.Option(help="A label for listings.")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Issue an API key (limits unset: no limit of that kind). The key is shown only now."""
    limits = Limits(rpm, tpm, concurrent, daily_tokens, monthly_tokens, daily_cost, monthly_cost)
    expires_at = None
    if expires_in_days is not None:
        expires_at = datetime.now(UTC) + timedelta(days=expires_in_days)

    async def create(db: Database) -> IssuedKey:
        return await KeyStore(db.pool).create_key(
            tenant,
            user,
            role=role,
            limits=limits,
            models=_split(models),
            collections=_split(collections),
            expires_at=expires_at,
            name=name,
            actor=ACTOR,
        )

    issued = run_on_store(config, create)
    _print_issued(issued, f"Created API key {issued.key_id} for {tenant}/{user}.", as_json)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List keys (never their secrets), oldest first, revoked and expired ones included."""
    keys = run_on_store(config, lambda db: KeyStore(db.pool).list_keys(tenant))
    now = datetime.now(UTC)
    if as_json:
        echo_json([key_json(k, now) for k in keys])
        return
    headers = ("KEY ID", "TENANT", "USER", "ROLE", "STATUS", "NAME", "CREATED", "EXPIRES")
    echo_table(headers, [_key_line(k, now) for k in keys])


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id `strata keys list` shows.")],
    config: ConfigOption = None,
) -> None:
    """Revoke a key: it stops working at once (within gateway.key_cache_s on other replicas)."""
    info = run_on_store(config, lambda db: KeyStore(db.pool).revoke(key_id, actor=ACTOR))
    typer.echo(f"Revoked API key {info.key_id} ({info.spec.tenant}/{info.spec.user}).")


@keys_app.command("rotate")
def keys_rotate(
    key_id: Annotated[str, typer.Argument(help="The key id `strata keys list` shows.")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Replace a key by a new one with the same settings and revoke the old one."""
    issued = run_on_store(config, lambda db: KeyStore(db.pool).rotate(key_id, actor=ACTOR))
    _print_issued(
        issued, f"Rotated API key {key_id}: revoked, replaced by {issued.key_id}.", as_json
    )


def _print_issued(issued: IssuedKey, headline: str, as_json: bool) -> None:
    if as_json:
        echo_json({"key": issued.key, **key_json(issued.info, datetime.now(UTC))})
        return
    typer.echo(f"{headline}\n\n    {issued.key}\n")
    typer.echo("Store it now: it is not shown again.")


def key_json(info: KeyInfo, now: datetime) -> dict[str, Any]:
    """A key as `--json` prints it (no secret, no hash)."""
    spec = info.spec
    return {
        "key_id": info.key_id,
        "tenant": spec.tenant,
        "user": spec.user,
        "role": spec.role,
        "status": info.status(now),
        "name": spec.name,
        "description": spec.description,
        "models": spec.models,
        "collections": spec.collections,
        "limits": asdict(spec.limits),
        "created_at": _iso(info.created_at),
        "expires_at": _iso(spec.expires_at),
        "revoked_at": _iso(info.revoked_at),
        "last_used_at": _iso(info.last_used_at),
    }


def _key_line(info: KeyInfo, now: datetime) -> tuple[str, ...]:
    spec = info.spec
    return (
        info.key_id, spec.tenant, spec.user, spec.role, info.status(now), spec.name or "-",
        _day(info.created_at), _day(spec.expires_at),
    )  # fmt: skip


# -- tenants ------------------------------------------------------------------------------------


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Argument(help="Letters, digits, '.', '_', '-'; up to 64.")],
    require_dpa: Annotated[
        bool, typer.Option(help="Send this tenant's data only to upstreams with a DPA.")
    ] = False,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    concurrent: ConcurrentOption = None,
    daily_tokens: DailyTokensOption = None,
    monthly_tokens: MonthlyTokensOption = None,
    daily_cost: DailyCostOption = None,
    monthly_cost: MonthlyCostOption = None,
    config: ConfigOption = None,
) -> None:
    """Create a tenant (limits unset: no limit of that kind)."""
    limits = Limits(rpm, tpm, concurrent, daily_tokens, monthly_tokens, daily_cost, monthly_cost)
    tenant = run_on_store(
        config,
        lambda db: KeyStore(db.pool).create_tenant(
            name, require_dpa=require_dpa, limits=limits, actor=ACTOR
        ),
    )
    typer.echo(f"Created tenant {_describe(tenant)}.")


@tenants_app.command("update")
def tenants_update(
    name: Annotated[str, typer.Argument(help="The tenant to change.")],
    require_dpa: Annotated[
        bool | None,
        typer.Option("--require-dpa/--no-require-dpa", help="Default: unchanged."),
    ] = None,
    rpm: RpmOption = None,
    tpm: TpmOption = None,
    concurrent: ConcurrentOption = None,
    daily_tokens: DailyTokensOption = None,
    monthly_tokens: MonthlyTokensOption = None,
    daily_cost: DailyCostOption = None,
    monthly_cost: MonthlyCostOption = None,
    clear_limits: Annotated[
        bool, typer.Option(help="Remove every limit first (then apply the ones given).")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Change a tenant: the limits given replace those limits, the others stay."""
    given = Limits(rpm, tpm, concurrent, daily_tokens, monthly_tokens, daily_cost, monthly_cost)

    async def update(db: Database) -> TenantInfo:
        store = KeyStore(db.pool)
        base = Limits() if clear_limits else (await store.get_tenant(name)).limits
        limits = merge_limits(base, given)
        return await store.update_tenant(name, require_dpa=require_dpa, limits=limits, actor=ACTOR)

    typer.echo(f"Updated tenant {_describe(run_on_store(config, update))}.")


@tenants_app.command("list")
def tenants_list(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """List tenants with their data-processing rule and limits."""
    tenants = run_on_store(config, lambda db: KeyStore(db.pool).list_tenants())
    if as_json:
        echo_json([_tenant_json(t) for t in tenants])
        return
    headers = ("TENANT", "DPA", "RPM", "TPM", "CONCURRENT", "TOKENS/DAY", "TOKENS/MONTH",
               "USD/DAY", "USD/MONTH")  # fmt: skip
    echo_table(headers, [_tenant_line(t) for t in tenants])


def merge_limits(base: Limits, given: Limits) -> Limits:
    """`base` with every limit that `given` sets replaced."""
    changes = {k: v for k, v in asdict(given).items() if v is not None}
    return replace(base, **changes)


def _tenant_json(tenant: TenantInfo) -> dict[str, Any]:
    return {
        "name": tenant.name,
        "require_dpa": tenant.require_dpa,
        "limits": asdict(tenant.limits),
        "created_at": _iso(tenant.created_at),
    }


def _tenant_line(tenant: TenantInfo) -> tuple[str, ...]:
    limits = [_text(v) for v in asdict(tenant.limits).values()]
    return (tenant.name, "yes" if tenant.require_dpa else "no", *limits)


def _describe(tenant: TenantInfo) -> str:
    limits = ", ".join(f"{k}={v}" for k, v in asdict(tenant.limits).items() if v is not None)
    dpa = "DPA upstreams only" if tenant.require_dpa else "any upstream"
    return f"{tenant.name} ({dpa}; limits: {limits or 'none'})"


# -- usage --------------------------------------------------------------------------------------


@usage_app.command("report")
def usage_report_command(
    by: Annotated[ReportBy, typer.Option(help="Group by user, tenant, key or model.")] = "user",
    top: Annotated[int, typer.Option(min=1, help="Show the biggest N.")] = 10,
    since: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="From this UTC day (YYYY-MM-DD); default: all."),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """The biggest spenders by cost (then tokens), with their share of the period's totals."""
    start = since.replace(tzinfo=UTC) if since is not None else None
    rows, spread, replicas = run_on_store(config, lambda db: _report_and_spread(db, by, top, start))
    if as_json:
        rows_json = [{**asdict(r), "tokens": r.tokens} for r in rows]
        replicas_json = [{**asdict(r), "idle_share": r.idle_share} for r in replicas]
        echo_json({"rows": rows_json, "concentration": asdict(spread), "replicas": replicas_json})
        return
    headers = (by.upper(), "REQUESTS", "PROMPT", "COMPLETION", "COST USD", "COST %", "TOKENS %")
    echo_table(headers, [_usage_line(r) for r in rows])
    for line in [*_spread_lines(spread), *map(_replica_line, replicas)]:
        typer.echo(line)


async def _report_and_spread(
    db: Database, by: str, top: int, since: datetime | None
) -> tuple[list[UsageRow], Concentration, list[ReplicaUsage]]:
    return (await usage_report(db.pool, by, top, since), await concentration(db.pool, by, since),
            await replica_time_report(db.pool, since))  # fmt: skip


def _replica_line(usage: ReplicaUsage) -> str:
    """A self-hosted upstream's idle time: paid for, billed to no request."""
    return (
        f"idle replica time on {usage.upstream}: {usage.idle_s:.0f} s of {usage.replica_s:.0f} s "
        f"({100 * usage.idle_share:.1f}%) = ${usage.idle_cost_usd:.4f} of "
        f"${usage.replica_cost_usd:.4f}"
    )


def _spread_lines(spread: Concentration) -> list[str]:
    """The concentration curve and the cost-per-request distribution, as sentences."""
    lines = [""]
    for share in spread.top:
        lines.append(
            f"top {100 * share.fraction:g}% of {spread.by}s ({share.scopes} of {spread.scopes}) "
            f"= {100 * share.cost_share:.1f}% of cost, {100 * share.token_share:.1f}% of tokens"
        )
    q = spread.cost_per_request
    lines.append(
        f"cost per request: p50 ${q.p50:.6f}, p90 ${q.p90:.6f}, p99 ${q.p99:.6f}, max ${q.max:.6f}"
    )
    return lines


def _usage_line(row: UsageRow) -> tuple[str, ...]:
    return (
        row.key, str(row.requests), str(row.prompt_tokens), str(row.completion_tokens),
        f"{row.cost_usd:.4f}", f"{100 * row.cost_share:.1f}", f"{100 * row.token_share:.1f}",
    )  # fmt: skip


# -- output -------------------------------------------------------------------------------------


def _split(values: str | None) -> list[str] | None:
    return None if values is None else values.split(",")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def _day(moment: datetime | None) -> str:
    return "-" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d")


def _text(value: float | int | None) -> str:
    return "-" if value is None else str(value)
