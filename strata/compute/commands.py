"""`strata plan`: the compute-planning commands, registered on one Typer app.

    strata plan memory    GPU memory per model: weights, KV cache, reserve, max concurrency
    strata plan capacity  replicas per hour and the monthly cost and risk of each strategy

Every bad input prints one line naming the option and the fix and exits with status 2.
"""

from __future__ import annotations

import typer

from strata.compute.capacity_command import capacity
from strata.compute.memory_command import memory

plan_app = typer.Typer(
    help="Compute planning: GPU memory per model, and capacity and cost per traffic profile.",
    no_args_is_help=True,
)
plan_app.command("memory")(memory)
plan_app.command("capacity")(capacity)
