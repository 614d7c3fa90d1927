"""The autoscaling policy Ray's controller calls, with a stand-in for Ray's context."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest

from strata.deploy.autoscaling import (
    QUEUE_DEPTH,
    SLO_ATTAINMENT,
    PoolLoad,
    QueueDepthPolicy,
    desired_replicas,
    replica_metrics,
)


@dataclass
class Stats:
    num_running: int
    num_waiting: int
    slo_attainment: float | None = None


@dataclass
class Context:
    """The fields of Ray's `AutoscalingContext` the policy reads."""

    current_num_replicas: int
    target_num_replicas: int
    aggregated_metrics: dict[str, dict[Any, float]] | None = field(default_factory=dict)


def test_a_replica_reports_its_queue_depth_and_its_slo_attainment_when_it_has_one() -> None:
    assert replica_metrics(Stats(3, 5)) == {QUEUE_DEPTH: 8.0}
    assert replica_metrics(Stats(1, 0, 0.75)) == {QUEUE_DEPTH: 1.0, SLO_ATTAINMENT: 0.75}


@pytest.mark.parametrize(
    ("depths", "wanted"),
    [((0.0,), 1), ((4.0,), 1), ((4.5,), 2), ((6.0, 6.0), 3), ((0.0, 0.0, 0.0), 1)],
)
def test_replicas_follow_the_total_queue_depth(depths: tuple[float, ...], wanted: int) -> None:
    assert desired_replicas(PoolLoad(len(depths), depths), 4.0, 0.9) == wanted


def test_missing_the_slo_adds_a_replica_whatever_the_queue() -> None:
    missing = PoolLoad(2, (1.0, 1.0), (0.5, 0.8))
    assert desired_replicas(missing, target_queue_depth=4.0, slo_target=0.9) == 3
    meeting = PoolLoad(2, (1.0, 1.0), (0.95, 0.99))
    assert desired_replicas(meeting, target_queue_depth=4.0, slo_target=0.9) == 1
    idle = PoolLoad(2, (0.0, 0.0), (0.2, 0.2))  # an old miss with nothing queued: shrink
    assert desired_replicas(idle, target_queue_depth=4.0, slo_target=0.9) == 1


def test_the_policy_reads_rays_aggregated_metrics() -> None:
    policy = QueueDepthPolicy(target_queue_depth=2.0, slo_attainment_target=0.9)
    busy = Context(1, 1, {QUEUE_DEPTH: {"replica-a": 5.0}})
    assert policy(busy) == (3, {})
    assert policy(Context(2, 2, {QUEUE_DEPTH: {"a": 0.0, "b": 0.5}})) == (1, {})
    assert policy(Context(2, 2, None)) == (1, {})  # no metrics yet: the minimum


def test_while_no_replica_runs_the_policy_keeps_rays_target() -> None:
    policy = QueueDepthPolicy(target_queue_depth=2.0, slo_attainment_target=0.9)
    assert policy(Context(0, 2, {QUEUE_DEPTH: {}})) == (2, {})


def test_the_policy_pickles_for_rays_controller() -> None:
    policy = pickle.loads(pickle.dumps(QueueDepthPolicy(3.0, 0.8)))
    assert policy(Context(1, 1, {QUEUE_DEPTH: {"a": 7.0}})) == (3, {})
