"""The cost of self-hosted replicas' time, busy and idle, as Prometheus counters per upstream.

A self-hosted upstream's replica bills its busy seconds to requests (their costs reach the
ledger and `strata:gateway_request_cost_usd`); the seconds no request used are idle. This
module turns a replica clock (replica seconds = busy + idle, `strata.engine.accounting`) and a
price per replica-second into counters, read at scrape time. It knows no engine or gateway
types: a clock is any callable returning an object with `replica_s` and `idle_s`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, Metric

from strata.telemetry.engine_metrics import PREFIX


class ReplicaClockLike(Protocol):
    """Seconds since a replica started and, of those, seconds with no request running."""

    @property
    def replica_s(self) -> float: ...
    @property
    def idle_s(self) -> float: ...


@dataclass(frozen=True)
class ReplicaSource:
    """One self-hosted upstream whose replica clock this process can read."""

    upstream: str
    usd_per_s: float  # its tier's GPU-hour price / 3600
    clock: Callable[[], ReplicaClockLike]


class ReplicaCostCollector:
    """`strata:upstream_{replica,idle}_seconds_total` and `..._cost_usd_total` per upstream."""

    def __init__(self, sources: Sequence[ReplicaSource]) -> None:
        self._sources = sources

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        families = {
            "replica_s": _family("replica_seconds", "Seconds the replica has been up."),
            "idle_s": _family("idle_seconds", "Seconds the replica ran no request."),
            "replica_usd": _family("replica_cost_usd", "US dollars of replica time."),
            "idle_usd": _family("idle_cost_usd", "US dollars of idle replica time."),
        }
        for source in self._sources:
            clock = source.clock()
            labels = [source.upstream]
            families["replica_s"].add_metric(labels, clock.replica_s)
            families["idle_s"].add_metric(labels, clock.idle_s)
            families["replica_usd"].add_metric(labels, clock.replica_s * source.usd_per_s)
            families["idle_usd"].add_metric(labels, clock.idle_s * source.usd_per_s)
        return list(families.values())


def _family(name: str, documentation: str) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + "upstream_" + name, documentation, labels=["upstream"])
