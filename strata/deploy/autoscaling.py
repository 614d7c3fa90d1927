"""How many engine replicas a pool wants, from what its replicas report: Ray Serve's autoscaler,
fed by strata's metrics.

Requests reach engine replicas through the gateway's router, not through Ray, so Ray's own
signal (requests in flight through its handles) stays at zero. Instead each replica reports
(`replica_metrics`, returned by its `record_autoscaling_stats`):

    strata_queue_depth      requests running + waiting in its engine
    strata_slo_attainment   share of its recent requests within the TTFT SLO (when slo.* is set)

Ray averages each over `look_back_s` and calls `QueueDepthPolicy` with them; the policy wants

    ceil(total queue depth / target_queue_depth) replicas, and
    while the replicas' mean SLO attainment is under slo_attainment_target (with requests
    queued or running): at least one more than now, and never fewer.

Ray then applies the pool's upscale/downscale delays and clamps to [min_replicas,
max_replicas]. This module imports nothing from Ray: Ray pickles `QueueDepthPolicy` by value
into its controller, and the tests call it with a stand-in context.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

QUEUE_DEPTH = "strata_queue_depth"
SLO_ATTAINMENT = "strata_slo_attainment"


class EngineLoad(Protocol):
    """What a replica reads from its engine (`strata.engine.outputs.EngineStats`)."""

    @property
    def num_running(self) -> int: ...
    @property
    def num_waiting(self) -> int: ...
    @property
    def slo_attainment(self) -> float | None: ...


def replica_metrics(stats: EngineLoad) -> dict[str, float]:
    """The metrics one replica reports to Ray's autoscaler."""
    metrics = {QUEUE_DEPTH: float(stats.num_running + stats.num_waiting)}
    if stats.slo_attainment is not None:
        metrics[SLO_ATTAINMENT] = stats.slo_attainment
    return metrics


@dataclass(frozen=True)
class PoolLoad:
    """A pool's replicas as the autoscaler sees them: their queue depths and SLO attainments
    (averaged over the look-back window; replicas without an SLO report none)."""

    replicas: int
    queue_depths: Sequence[float]
    slo_attainments: Sequence[float] = ()

    @property
    def total_depth(self) -> float:
        return sum(self.queue_depths)

    @property
    def attainment(self) -> float | None:
        if not self.slo_attainments:
            return None
        return sum(self.slo_attainments) / len(self.slo_attainments)


def desired_replicas(load: PoolLoad, target_queue_depth: float, slo_target: float) -> int:
    """The replicas `load` calls for, before Ray's delays and bounds (see the module
    docstring)."""
    wanted = math.ceil(load.total_depth / target_queue_depth)
    attainment = load.attainment
    if attainment is not None and attainment < slo_target and load.total_depth > 0:
        wanted = max(wanted, load.replicas + 1)  # missing the SLO: more, whatever the queue
    return max(wanted, 1)


class QueueDepthPolicy:
    """Ray Serve's `AutoscalingPolicy(policy_function=QueueDepthPolicy, policy_kwargs=...)`:
    called with Ray's `AutoscalingContext` on every autoscaling tick; returns the replicas
    wanted and the (unused) policy state."""

    def __init__(self, target_queue_depth: float, slo_attainment_target: float) -> None:
        self.target_queue_depth = target_queue_depth
        self.slo_attainment_target = slo_attainment_target

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        if ctx.current_num_replicas == 0:  # starting: Ray starts min_replicas
            return ctx.target_num_replicas, {}
        load = pool_load(ctx.current_num_replicas, ctx.aggregated_metrics or {})
        return desired_replicas(load, self.target_queue_depth, self.slo_attainment_target), {}


def pool_load(replicas: int, metrics: Mapping[str, Mapping[Any, float]]) -> PoolLoad:
    """`PoolLoad` from Ray's aggregated metrics: metric name → replica → value."""
    depths = list(metrics.get(QUEUE_DEPTH, {}).values())
    attainments = list(metrics.get(SLO_ATTAINMENT, {}).values())
    return PoolLoad(replicas, depths, attainments)
