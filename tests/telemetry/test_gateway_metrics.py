from __future__ import annotations

from dataclasses import dataclass

from strata.telemetry.gateway_metrics import GatewayMetrics


@dataclass(frozen=True)
class _Usage:
    prompt_tokens: int = 10
    completion_tokens: int = 5
    cost_usd: float = 0.5
    duration_s: float = 0.2
    ttft_s: float | None = 0.05


@dataclass(frozen=True)
class _Up:
    name: str
    tier: str
    available: bool
    in_flight: int


def _value(text: str, series: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(series + " "))
    return float(line.rsplit(" ", 1)[1])


def test_tenants_off_the_allow_list_share_one_label() -> None:
    metrics = GatewayMetrics(["acme"])
    for tenant in ("acme", "shop1", "shop2", "shop3"):
        metrics.request("/v1/chat/completions", 200, tenant, _Usage())
    text = metrics.render().decode()
    assert _value(text, 'strata:gateway_tokens_total{kind="prompt",tenant="acme"}') == 10
    assert _value(text, 'strata:gateway_tokens_total{kind="prompt",tenant="other"}') == 30
    assert _value(text, 'strata:gateway_cost_usd_total{tenant="other"}') == 1.5
    assert "shop1" not in text
    assert (
        _value(text, 'strata:gateway_requests_total{route="/v1/chat/completions",status="200"}')
        == 4
    )


def test_rejections_and_upstreams_are_exported() -> None:
    metrics = GatewayMetrics(
        [], lambda: [_Up("spot", "spot", False, 0), _Up("od", "on-demand", True, 3)]
    )
    metrics.rejected("quota_exceeded")
    text = metrics.render().decode()
    assert _value(text, 'strata:gateway_rejections_total{code="quota_exceeded"}') == 1
    assert _value(text, 'strata:upstream_available{tier="spot",upstream="spot"}') == 0
    assert _value(text, 'strata:upstream_in_flight{upstream="od"}') == 3


def test_cost_per_answered_request_is_a_histogram_per_tenant_label() -> None:
    metrics = GatewayMetrics(["acme"])
    metrics.request("/v1/chat/completions", 200, "acme", _Usage(cost_usd=0.003))
    metrics.request("/v1/chat/completions", 200, "shop1", _Usage(cost_usd=0.003))
    metrics.request("/v1/chat/completions", 502, "acme", _Usage(cost_usd=0.0))  # not answered
    text = metrics.render().decode()
    assert _value(text, 'strata:gateway_request_cost_usd_count{tenant="acme"}') == 1
    assert _value(text, 'strata:gateway_request_cost_usd_bucket{le="0.0025",tenant="acme"}') == 0
    assert _value(text, 'strata:gateway_request_cost_usd_bucket{le="0.005",tenant="acme"}') == 1
    assert _value(text, 'strata:gateway_request_cost_usd_count{tenant="other"}') == 1
