"""What strata exports, for tests that check names against it: a live gateway's `/metrics`
(gateway, pipeline, alerts, replica cost) and the engine's collectors, as Prometheus text."""

from __future__ import annotations

from pathlib import Path

from strata.engine.outputs import EngineStats
from strata.telemetry.engine_metrics import EngineMetrics
from tests.gateway.conftest import gateway_settings
from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream


def exported_scrapes(pg_dsn: str, tmp_path: Path) -> tuple[str, str]:
    """(the gateway's /metrics body, the engine's), with an SLO set so that the engine's
    collectors emit every gauge."""
    stats = EngineStats(num_running=0, num_waiting=0, kv_blocks_total=1, kv_blocks_used=0,
                        prefix_queries=0, prefix_hits=0, num_preemptions=0, num_steps=0,
                        last_batch_size=0, prompt_tokens=0, generation_tokens=0,
                        slo_attainment=1.0)  # fmt: skip
    engine = EngineMetrics(lambda: stats).render().decode()
    with MockUpstream("mock") as upstream:
        settings = gateway_settings(pg_dsn, tmp_path, upstream)
        with LiveGateway(settings) as live, live.http(live.admin_key) as http:
            reply = http.get("/metrics")
    assert reply.status_code == 200, reply.text
    return reply.text, engine
