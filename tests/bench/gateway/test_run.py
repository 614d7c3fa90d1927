from __future__ import annotations

from pathlib import Path

import pytest

from strata.bench.gateway import GatewayBenchError
from strata.bench.gateway.mock import Mock
from strata.bench.gateway.modes import MODES, PLAIN
from strata.bench.gateway.run import Plan, probe, run
from strata.bench.gateway.systems import Endpoint
from tests.bench.gateway.conftest import needs_nginx, needs_wrk


def test_probe_accepts_the_mock(mock: Mock) -> None:
    endpoint = Endpoint("direct", {m.name: mock.chat_url(m) for m in MODES})
    for mode in MODES:
        probe(endpoint, mode)


def test_probe_refuses_a_wrong_answer(mock: Mock) -> None:
    wrong = Endpoint("broken", {m.name: f"{mock.url}/nowhere" for m in MODES})
    with pytest.raises(GatewayBenchError, match="broken non-streaming probe failed: 404"):
        probe(wrong, PLAIN)


@needs_nginx
@needs_wrk
def test_run_direct_end_to_end(tmp_path: Path) -> None:
    """The whole loop on the baseline alone: two modes, one connection count, 1 s cells."""
    result = run(Plan(("direct",), (2,), duration_s=1, warmup_s=0, chunks=5), tmp_path)
    assert [(c.mode, c.concurrency) for c in result.cells] == [(m.name, 2) for m in MODES]
    for cell in result.cells:
        assert cell.wrk.requests > 100 and cell.wrk.errors.total == 0
        assert cell.client_cpu_share > 0.1  # wrk and nginx did the work
        assert 0.0 <= cell.client_core_busy <= 1.0
        assert cell.gateway_cpu_share is None and cell.gateway_cpu_ms_per_request is None
    assert result.wall_s > 2
