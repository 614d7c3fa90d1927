"""`strata plan`: the compute-planning commands, registered on one Typer app.

    strata plan memory    GPU memory per model: weights, KV cache, reserve, max concurrency
    strata plan capacity  replicas per hour and the monthly cost and risk of each strategy
    strata plan batching  simulated latency and throughput per batch cap and window, and the pick

Every bad input prints one line naming the option and the fix and exits with status 2.
"""

from __future__ import annotations

import typer

from strata.compute.batching_command import batching
from strata.compute.capacity_command import capacity
from strata.compute.memory_command import memory

plan_app = typer.Typer(
    help="Compute planning: GPU memory per model, capacity and cost per traffic profile, and "
    "batch cap and window per latency SLO.",
    no_args_is_help=True,
)
plan_app.command("memory")(memory)
plan_app.command("capacity")(capacity)
plan_app.command("batching")(batching)
