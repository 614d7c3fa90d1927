"""What `strata plan capacity` prints: replicas per hour, the strategy table, the decision in
the seed's terms, and the same as JSON."""

from __future__ import annotations

from typing import Any

from strata.compute.capacity import (
    FAILOVER_RULE_S,
    CapacityPlan,
    Strategy,
    busy_share,
    reservation_break_even,
)
from strata.compute.tables import table

STEADY_RATIO = 3.0  # the seed: "at 3:1 or lower, reserved capacity pays"


def capacity_lines(plan: CapacityPlan) -> list[str]:
    """The terminal report."""
    return [
        *_inputs(plan),
        "",
        *_replica_grid(plan.replicas),
        "",
        *table(_HEADERS, [_row(plan, s) for s in plan.strategies], right=range(1, 7)),
        "",
        "Decision:",
        *(f"  {line}" for line in decision(plan)),
    ]


def _inputs(plan: CapacityPlan) -> list[str]:
    i, p = plan.inputs, plan.inputs.profile
    spot = f"{i.prices.spot:.2f}" if i.prices.spot is not None else "none"
    return [
        f"Traffic: {p.source}: peak {p.peak / 3600:,.2f} req/s, average {p.mean / 3600:,.2f} "
        f"req/s, peak-to-average {p.peak_to_average:.1f}:1",
        f"Replica: {i.replica_rps:g} req/s within the SLO (measure it with `strata bench serve "
        f"--sweep`: best_rate), {i.gpus_per_replica} x {i.gpu} each",
        f"Prices (USD per GPU-hour, pricing.gpu_hour_usd.{i.gpu}): reserved "
        f"{i.prices.reserved:.2f}, on-demand {i.prices.on_demand:.2f}, spot {spot}; "
        f"{i.reserved_term_months}-month reservations",
    ]


def _replica_grid(replicas: tuple[int, ...]) -> list[str]:
    """Replicas per hour: one row per day of 24 hours."""
    rows = [replicas[start : start + 24] for start in range(0, len(replicas), 24)]
    width = max(len(str(max(replicas))), 2)
    header = " ".join(f"{h:>{width}}" for h in range(min(24, len(replicas))))
    lines = [f"Replicas needed per hour (peak {max(replicas)}):", f"  hour    {header}"]
    for day, row in enumerate(rows, 1):
        lines.append(f"  day {day:<3} " + " ".join(f"{r:>{width}}" for r in row))
    return lines


_HEADERS = ("strategy", "reserved", "on-demand h/mo", "spot h/mo", "starts/mo", "USD/month",
            "vs on-demand", "SLO risk")  # fmt: skip


def _row(plan: CapacityPlan, s: Strategy) -> tuple[str, ...]:
    base = plan.strategy("all on-demand").monthly_usd
    change = "-" if s.name == "all on-demand" else f"{s.monthly_usd / base - 1:+.0%}"
    mark = " *" if s is plan.recommended else ""
    return (
        s.name + mark, str(s.reserved_replicas), f"{s.on_demand_hours:,.0f}",
        f"{s.spot_hours:,.0f}", f"{s.starts:,.0f}", f"{s.monthly_usd:,.0f}", change,
        _risk(s),
    )  # fmt: skip


def _risk(s: Strategy) -> str:
    r = s.risk
    if r is None:
        return "no preemption" if s.on_demand_hours else "none (fixed fleet)"
    rule = "" if r.within_rule else f"; breaks the {FAILOVER_RULE_S:.0f} s rule"
    return (
        f"{r.preemptions:,.1f} reclaims/mo, {r.retried_requests:,.0f} requests retried "
        f"({r.retried_share:.3%}), {r.lost_replica_hours:,.1f} replica-h lost{rule}"
    )


def decision(plan: CapacityPlan) -> list[str]:
    """The decision in the seed's words, with this profile's and these prices' numbers."""
    lines = [_ratio_line(plan), _baseline_line(plan), _reservation_line(plan)]
    lines += _spot_lines(plan)
    lines += _recommendation(plan)
    return lines


def _ratio_line(plan: CapacityPlan) -> str:
    ratio = plan.inputs.profile.peak_to_average
    if ratio <= STEADY_RATIO:
        verdict = "at 3:1 or lower, reserved capacity pays"
    else:
        verdict = "above 3:1: reserve only the floor that is busy most hours, burst the rest"
    return f"Peak-to-average {ratio:.1f}:1: {verdict}."


def _baseline_line(plan: CapacityPlan) -> str:
    level = plan.strategy("reserved + on-demand").reserved_replicas
    even = reservation_break_even(plan.inputs.prices)
    busy = f"replica {level + 1} only {busy_share(plan.replicas, level + 1):.0%}"
    if level:
        busy = f"replica {level} is needed {busy_share(plan.replicas, level):.0%} of hours, " + busy
    return (
        f"A reserved replica pays when it is needed more than {even:.0%} of hours "
        f"(reserved / on-demand price): the cheapest baseline is {level} ({busy})."
    )


def _reservation_line(plan: CapacityPlan) -> str:
    i = plan.inputs
    premium = i.prices.on_demand / i.prices.reserved - 1
    return (
        f"On-demand costs {premium:.0%} more than a {i.reserved_term_months}-month reservation"
        " at these prices (the seed: ~40-60% more than a one-year reservation)."
    )


def _spot_lines(plan: CapacityPlan) -> list[str]:
    i = plan.inputs
    if i.prices.spot is None:
        return [f"No spot price for {i.gpu} (pricing.gpu_hour_usd.{i.gpu}.spot): spot skipped."]
    risk = plan.strategy("reserved + spot").risk
    assert risk is not None
    saving = 1 - i.prices.spot / i.prices.on_demand
    within = "within the rule" if risk.within_rule else "BREAKS the rule: spot is not recommended"
    return [
        f"Spot saves {saving:.0%} against on-demand (the seed: up to 70%) but can be reclaimed "
        f"with minutes of notice: at {i.spot_preemptions_per_hour:g} reclaims per replica-hour "
        f"expect {risk.preemptions:,.1f} a month and {risk.retried_requests:,.0f} retried "
        "requests.",
        f"Never serve users from spot without automatic failover to on-demand within "
        f"{FAILOVER_RULE_S:.0f} s: failover assumed {risk.failover_s:g} s (--failover-s), "
        f"{within}; give every spot upstream an on-demand fallback in its routing group.",
    ]


def _recommendation(plan: CapacityPlan) -> list[str]:
    s = plan.recommended
    lines = [f"Recommended: {_summary(plan, s)}"]
    if s.risk is not None:
        safe = plan.strategy("reserved + on-demand")
        lines.append(f"Without automatic failover within 90 s: {_summary(plan, safe)}")
    return lines


def _summary(plan: CapacityPlan, s: Strategy) -> str:
    i = plan.inputs
    saving = 1 - s.monthly_usd / plan.strategy("all on-demand").monthly_usd
    reserved = ""
    if s.reserved_replicas:
        reserved = (
            f"reserve {_replicas(s.reserved_replicas)} ({s.reserved_replicas * i.gpus_per_replica}"
            f" x {i.gpu}; ${s.commitment_usd:,.0f} committed over {i.reserved_term_months} "
            "months), "
        )
    return (
        f"{s.name}: {reserved}${s.monthly_usd:,.0f} a month, {saving:.0%} less than all on-demand."
    )


def capacity_json(plan: CapacityPlan) -> dict[str, Any]:
    """The plan as JSON: money in USD per month, hours in replica-hours per month."""
    i, p = plan.inputs, plan.inputs.profile
    return {
        "traffic": {"source": p.source, "hours": p.hours, "mean_rph": p.mean,
                    "peak_rph": p.peak, "peak_to_average": p.peak_to_average},
        "replica": {"rps": i.replica_rps, "gpu": i.gpu, "gpus": i.gpus_per_replica},
        "prices": {"reserved": i.prices.reserved, "on_demand": i.prices.on_demand,
                   "spot": i.prices.spot, "spot_preemptions_per_hour": i.spot_preemptions_per_hour,
                   "reserved_term_months": i.reserved_term_months},
        "replicas_per_hour": list(plan.replicas),
        "strategies": [_strategy_json(s) for s in plan.strategies],
        "recommended": plan.recommended.name,
        "decision": decision(plan),
    }  # fmt: skip


def _strategy_json(s: Strategy) -> dict[str, Any]:
    risk = None
    if s.risk is not None:
        risk = {**s.risk.__dict__, "within_rule": s.risk.within_rule}
    return {**{k: v for k, v in s.__dict__.items() if k != "risk"},
            "monthly_usd": s.monthly_usd, "risk": risk}  # fmt: skip


def _replicas(n: int) -> str:
    return f"{n} replica" if n == 1 else f"{n} replicas"
