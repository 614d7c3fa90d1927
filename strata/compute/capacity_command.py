"""`strata plan capacity`: a traffic profile (CSV, ratio and shape, or the usage ledger), one
replica's rate at the SLO, and the `pricing` settings in; strategies and the decision out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from strata.cli_options import EXIT_BAD_INPUT, EXIT_FAILED, ConfigOption, JsonOption, settings_from
from strata.compute.capacity import CapacityInputs, TierPrices, plan_capacity
from strata.compute.capacity_report import capacity_json, capacity_lines
from strata.compute.cli_common import (
    emit,
    fail,
)
from strata.compute.gpus import canonical_name
from strata.compute.traffic import TrafficProfile, ledger_profile, read_csv, shaped_profile
from strata.config import GpuHourPrice, Settings
from strata.errors import ConfigError, StrataError


def capacity(
    csv: Annotated[Path | None, typer.Option(
        "--csv", help="Requests per hour, one row per hour ('requests' or 'hour,requests'), "
        "e.g. a week of 168 rows.", dir_okay=False)] = None,
    peak_to_average: Annotated[float | None, typer.Option(
        help="Instead of a CSV: this peak-to-average ratio on a daily shape (with --mean-rps)."
    )] = None,
    mean_rps: Annotated[float | None, typer.Option(
        help="With --peak-to-average: average requests per second.")] = None,
    shape: Annotated[str, typer.Option(
        help="With --peak-to-average: diurnal (every day alike) or weekday (weekends at half)."
    )] = "diurnal",
    from_ledger: Annotated[bool, typer.Option(
        "--from-ledger", help="Measure requests per hour from strata's usage ledger (the "
        "configured store).")] = False,
    days: Annotated[int, typer.Option(help="With --from-ledger: days to measure.")] = 7,
    model: Annotated[str | None, typer.Option(
        help="With --from-ledger: only this model's requests.")] = None,
    replica_rps: Annotated[float | None, typer.Option(
        help="Requests per second one replica serves within the SLO: the best_rate of "
        "`strata bench serve --sweep`.")] = None,
    bench_report: Annotated[Path | None, typer.Option(
        help="Instead of --replica-rps: a `strata bench serve --sweep` JSON report "
        "(its best_rate).", dir_okay=False)] = None,
    gpu: Annotated[str, typer.Option(
        help="GPU type: the key in pricing.gpu_hour_usd.")] = "a100-80gb",
    gpus_per_replica: Annotated[int, typer.Option(help="GPUs per replica (tensor parallel).")] = 1,
    min_replicas: Annotated[int, typer.Option(help="Replicas kept up at any hour.")] = 1,
    failover_s: Annotated[float, typer.Option(
        help="Seconds from a spot reclaim to traffic on the fallback (the seed's rule: <= 90; "
        "strata's gateway measures its own in docs/benchmarks/failover.md).")] = 90.0,
    fallback_hours: Annotated[float, typer.Option(
        help="On-demand replica-hours each spot reclaim costs before spot returns.")] = 1.0,
    reserved_usd: Annotated[float | None, typer.Option(
        help="Override pricing: reserved USD per GPU-hour.")] = None,
    on_demand_usd: Annotated[float | None, typer.Option(
        help="Override pricing: on-demand USD per GPU-hour.")] = None,
    spot_usd: Annotated[float | None, typer.Option(
        help="Override pricing: spot USD per GPU-hour.")] = None,
    as_json: JsonOption = False,
    plot: Annotated[Path | None, typer.Option(
        help="Draw the traffic and each tier's replicas to this PNG (needs matplotlib).",
        dir_okay=False)] = None,
    config: ConfigOption = None,
) -> None:  # fmt: skip
    """Replicas per hour for a traffic profile, and the monthly cost and SLO risk of all
    on-demand, reserved + on-demand burst, and reserved + spot burst behind failover."""
    try:
        settings = settings_from(config)
        profile = _profile(settings, csv, peak_to_average, mean_rps, shape, from_ledger, days,
                           model)  # fmt: skip
        prices = _prices(settings, gpu, reserved_usd, on_demand_usd, spot_usd)
        inputs = CapacityInputs(
            profile, _replica_rps(replica_rps, bench_report), canonical_name(gpu), prices,
            gpus_per_replica, min_replicas, settings.pricing.spot_preemptions_per_hour,
            settings.pricing.reserved_term_months, failover_s, fallback_hours,
        )  # fmt: skip
        plan = plan_capacity(inputs)
        if plot is not None:
            from strata.compute.plot import plot_capacity

            plot_capacity(plan, plot)
    except ConfigError as exc:
        fail(exc.message, EXIT_BAD_INPUT)
    except StrataError as exc:
        fail(exc.message, EXIT_FAILED)
    emit(capacity_json(plan), capacity_lines(plan), as_json)
    if plot is not None and not as_json:
        typer.echo(f"\nPlot written to {plot}")


def _profile(
    settings: Settings, csv: Path | None, ratio: float | None, mean_rps: float | None,
    shape: str, from_ledger: bool, days: int, model: str | None,
) -> TrafficProfile:  # fmt: skip
    sources = [csv is not None, ratio is not None, from_ledger]
    if sum(sources) != 1:
        raise ConfigError(
            "give exactly one traffic source: --csv FILE, --peak-to-average R --mean-rps X, "
            "or --from-ledger."
        )
    if model is not None and not from_ledger:
        raise ConfigError("--model filters the usage ledger: use it with --from-ledger.")
    if csv is not None:
        return read_csv(csv)
    if ratio is not None:
        if mean_rps is None:
            raise ConfigError("--peak-to-average needs --mean-rps: average requests per second.")
        return shaped_profile(ratio, mean_rps, shape)
    return _ledger(settings, days, model)


def _ledger(settings: Settings, days: int, model: str | None) -> TrafficProfile:
    import psycopg

    try:
        return ledger_profile(settings, days, model)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StrataError(f"--from-ledger: PostgreSQL: {first}") from exc


def _replica_rps(rps: float | None, report: Path | None) -> float:
    if (rps is None) == (report is None):
        raise ConfigError(
            "give one of --replica-rps (requests per second one replica serves within the SLO) "
            "or --bench-report (a `strata bench serve --sweep` JSON report)."
        )
    if rps is not None:
        return rps
    assert report is not None
    return _best_rate(report)


def _best_rate(report: Path) -> float:
    try:
        document = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--bench-report {report}: not readable JSON ({exc}).") from exc
    rate = document.get("best_rate") if isinstance(document, dict) else None
    if not isinstance(rate, int | float) or rate <= 0:
        raise ConfigError(
            f"--bench-report {report}: no positive best_rate; it must be the JSON report of "
            "`strata bench serve --sweep` in which at least one rate held the SLO."
        )
    return float(rate)


def _prices(
    settings: Settings, gpu: str, reserved: float | None, on_demand: float | None,
    spot: float | None,
) -> TierPrices:  # fmt: skip
    key = canonical_name(gpu)
    table = settings.pricing.gpu_hour_usd
    overrides = {"reserved": reserved, "on_demand": on_demand, "spot": spot}
    given = {k: v for k, v in overrides.items() if v is not None}
    if key not in table and not {"reserved", "on_demand"} <= given.keys():
        raise ConfigError(
            f"--gpu {gpu}: pricing.gpu_hour_usd has no entry for {key!r} (known: "
            f"{', '.join(sorted(table))}); add one to the config or pass --reserved-usd and "
            "--on-demand-usd."
        )
    base = table[key].model_dump() if key in table else {}
    try:
        price = GpuHourPrice(**{**base, **given})
    except ValidationError as exc:
        reason = "; ".join(e["msg"] for e in exc.errors())
        raise ConfigError(f"prices for {key}: {reason}") from None
    return TierPrices(price.reserved, price.on_demand, price.spot)
