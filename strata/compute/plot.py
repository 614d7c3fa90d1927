"""`--plot out.png`: the traffic curve over each strategy's replicas stacked by tier
(matplotlib, imported only here, only when asked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from strata.compute.capacity import CapacityPlan, Strategy
from strata.errors import ConfigError

SECONDS_PER_HOUR = 3600
COLOURS = {"reserved": "#4c72b0", "on-demand": "#dd8452", "spot": "#55a868"}
PANELS = ("reserved + on-demand", "reserved + spot")


def plot_capacity(plan: CapacityPlan, path: Path) -> None:
    """One panel per burst strategy: reserved replicas, then the burst tier, stacked per
    hour, with the traffic in replica-equivalents (requests per second / one replica's
    rate) drawn over them."""
    plt = _pyplot()
    strategies = [s for s in plan.strategies if s.name in PANELS]
    figure, axes = plt.subplots(len(strategies), 1, figsize=(12, 3.2 * len(strategies)),
                                sharex=True, squeeze=False)  # fmt: skip
    for ax, strategy in zip(axes[:, 0], strategies, strict=True):
        _panel(ax, plan, strategy)
    axes[-1, 0].set_xlabel("hour of the profile")
    figure.suptitle(_title(plan))
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except OSError as exc:
        raise ConfigError(f"--plot {path}: cannot write it ({exc}).") from exc
    finally:
        plt.close(figure)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    return plt


def _panel(ax: Any, plan: CapacityPlan, strategy: Strategy) -> None:
    hours = list(range(plan.inputs.profile.hours + 1))
    total = [*plan.replicas, plan.replicas[-1]]  # the last hour repeated closes the step
    reserved = [min(r, strategy.reserved_replicas) for r in total]
    burst = "spot" if strategy.spot_hours else "on-demand"
    ax.fill_between(hours, 0, reserved, step="post", color=COLOURS["reserved"], label="reserved")
    ax.fill_between(hours, reserved, total, step="post", color=COLOURS[burst], label=burst)
    midpoints = [h + 0.5 for h in hours[:-1]]
    ax.plot(midpoints, _traffic(plan), color="black", linewidth=1.2, label="traffic")
    ax.set_xlim(0, hours[-1])
    ax.set_ylim(0, max(plan.replicas) * 1.2)
    ax.set_ylabel("replicas")
    mark = " (recommended)" if strategy is plan.recommended else ""
    ax.set_title(f"{strategy.name}{mark}: {strategy.reserved_replicas} reserved, "
                 f"${strategy.monthly_usd:,.0f}/month", fontsize=10)  # fmt: skip
    ax.legend(loc="upper right", fontsize=8)


def _traffic(plan: CapacityPlan) -> list[float]:
    rate = plan.inputs.replica_rps
    return [rph / SECONDS_PER_HOUR / rate for rph in plan.inputs.profile.requests_per_hour]


def _title(plan: CapacityPlan) -> str:
    profile = plan.inputs.profile
    return f"{profile.source}: peak-to-average {profile.peak_to_average:.1f}:1"
