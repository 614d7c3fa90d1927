"""The gateway's Prometheus metrics: requests by route and status, limit rejections by kind,
tokens and cost per tenant, latency, and each upstream's health, under `strata:`.

Tenant labels are bounded: only tenants on the configured allow-list get their own label and
every other tenant counts as "other", so a counter never moves between labels and the series
count stays fixed however many tenants sign up (never one label per user). Upstream gauges are
read at scrape time from a snapshot callable. This module knows no gateway types.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from strata.telemetry.engine_metrics import LATENCY_BUCKETS_S, PREFIX

OTHER = "other"
# US dollars per request, from a millionth of a cent-sized call up to $10.
COST_BUCKETS_USD = (
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class UpstreamLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def tier(self) -> str: ...
    @property
    def available(self) -> bool: ...
    @property
    def in_flight(self) -> int: ...


class GatewayMetrics:
    """One registry with the gateway's metric families."""

    def __init__(
        self,
        tenant_labels: Collection[str],
        upstreams: Callable[[], Sequence[UpstreamLike]] = tuple,
    ) -> None:
        self._tenants = frozenset(tenant_labels)
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(PREFIX + "gateway_requests_total",
                                 "Requests answered, by route and HTTP status.",
                                 ["route", "status"], registry=self.registry)  # fmt: skip
        self._rejections = Counter(PREFIX + "gateway_rejections_total",
                                   "Requests refused by a limit or quota, by its code.",
                                   ["code"], registry=self.registry)  # fmt: skip
        self._guard = Counter(PREFIX + "gateway_guard_verdicts_total",
                              "Guard findings by detector and action, and refusals by code.",
                              ["verdict"], registry=self.registry)  # fmt: skip
        self._tokens = Counter(PREFIX + "gateway_tokens_total",
                               "Tokens per tenant (allow-listed, else 'other') and kind.",
                               ["tenant", "kind"], registry=self.registry)  # fmt: skip
        self._cost = Counter(PREFIX + "gateway_cost_usd_total", "US dollars spent per tenant.",
                             ["tenant"], registry=self.registry)  # fmt: skip
        self._request_cost = Histogram(PREFIX + "gateway_request_cost_usd",
                                       "US dollars per answered request (status < 400), per "
                                       "tenant.", ["tenant"], buckets=COST_BUCKETS_USD,
                                       registry=self.registry)  # fmt: skip
        self._duration = Histogram(PREFIX + "gateway_request_duration_seconds",
                                   "Time from arrival to the last byte, by route.", ["route"],
                                   buckets=LATENCY_BUCKETS_S, registry=self.registry)  # fmt: skip
        self._ttft = Histogram(PREFIX + "gateway_time_to_first_token_seconds",
                               "Time from arrival to the first streamed text.",
                               buckets=LATENCY_BUCKETS_S, registry=self.registry)  # fmt: skip
        self._fair_wait = Histogram(PREFIX + "gateway_fair_queue_wait_seconds",
                                    "Time requests waited for their fair turn while every "
                                    "upstream of their model was saturated, per tenant.",
                                    ["tenant"], buckets=LATENCY_BUCKETS_S,
                                    registry=self.registry)  # fmt: skip
        self.registry.register(_UpstreamCollector(upstreams))

    def tenant_label(self, tenant: str) -> str:
        return tenant if tenant in self._tenants else OTHER

    def request(self, route: str, status: int, tenant: str, usage: RequestUsage) -> None:
        """Count one finished request."""
        label = self.tenant_label(tenant)
        self._requests.labels(route, str(status)).inc()
        self._tokens.labels(label, "prompt").inc(usage.prompt_tokens)
        self._tokens.labels(label, "completion").inc(usage.completion_tokens)
        self._cost.labels(label).inc(usage.cost_usd)
        if status < 400:
            self._request_cost.labels(label).observe(usage.cost_usd)
        self._duration.labels(route).observe(usage.duration_s)
        if usage.ttft_s is not None:
            self._ttft.observe(usage.ttft_s)

    def guarded(self, verdict: str) -> None:
        """One guard finding (`detector:action`) or refusal (its error code)."""
        self._guard.labels(verdict).inc()

    def rejected(self, code: str) -> None:
        self._rejections.labels(code).inc()

    def fair_wait(self, tenant: str, seconds: float) -> None:
        """One request waited `seconds` in the router's fair queue (let through or not)."""
        self._fair_wait.labels(self.tenant_label(tenant)).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True)
class RequestUsage:
    """What one finished request used and how long it took."""

    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    duration_s: float
    ttft_s: float | None


class _UpstreamCollector:
    def __init__(self, upstreams: Callable[[], Sequence[UpstreamLike]]) -> None:
        self._upstreams = upstreams

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        available = GaugeMetricFamily(PREFIX + "upstream_available",
                                      "1 when the upstream takes new requests.",
                                      labels=["upstream", "tier"])  # fmt: skip
        in_flight = GaugeMetricFamily(PREFIX + "upstream_in_flight",
                                      "Requests in flight to the upstream.",
                                      labels=["upstream"])  # fmt: skip
        for up in self._upstreams():
            available.add_metric([up.name, up.tier], 1.0 if up.available else 0.0)
            in_flight.add_metric([up.name], float(up.in_flight))
        return [available, in_flight]
