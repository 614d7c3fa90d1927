"""The chaos test: kill -9 the spot engine server under steady load. No request that had not
started streaming fails; streams cut after content end with a clean error event."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from strata.bench.failover.cluster import cluster
from strata.bench.failover.main import markdown, summary
from strata.bench.failover.run import Plan, run


@pytest.mark.slow
def test_killing_the_spot_replica_loses_no_request_that_had_not_streamed(
    tiny_llama_folder: Path, tmp_path: Path
) -> None:
    plan = Plan(clients=6, duration_s=5.0, kill_at_s=2.0, max_tokens=64)
    with cluster(tiny_llama_folder, tmp_path) as running:
        result = asyncio.run(run(running, plan))
    before = [o for o in result.outcomes if o.started < result.killed_at]
    after = [o for o in result.outcomes if o.started >= result.killed_at]
    assert before and after, "load ran on both sides of the kill"
    assert result.count("failed_before_content") == 0, [
        o.detail for o in result.outcomes if o.kind == "failed_before_content"
    ]
    assert result.count("broken_stream") == 0
    assert all(o.kind == "ok" for o in after if o.started > result.killed_at + 2)
    assert result.out_of_rotation_s is not None
    data = {"command": "test", "when": "now", "machine": "here", "plan": vars(plan)}
    text = markdown({**data, **summary(result)})
    assert "| ok |" in text and "Spot out of rotation" in text
