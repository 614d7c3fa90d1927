"""Each source's status (`strata.pipeline.status`) over the admin API: `strata serve` streams
the sources as one pipeline worker, and `GET /admin/pipeline/status` names it as their owner."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.gateway.conftest import gateway_settings
from tests.pipeline.conftest import TICKETS_DDL, run_sql, source_settings
from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream


def _owned_report(gateway: LiveGateway, timeout_s: float = 120.0) -> dict[str, Any]:
    """The source's report once its owner has indexed the table and recorded the backfill's
    end (the document is committed a moment before the backfill is marked done)."""
    deadline = time.monotonic() + timeout_s
    while True:
        reply = gateway.admin("GET", "/pipeline/status", params={"source": "tickets"})
        assert reply.status_code == 200, reply.text
        (report,) = reply.json()["data"]
        indexed = report["documents"] == 1 and report["backfilled_at"]
        if (report["owner"] or {}).get("live") and indexed:
            return report  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"no owner indexed the table: {report}"
        time.sleep(0.2)


def test_the_admin_api_names_the_gateway_as_owner_of_the_source_it_streams(
    pg_dsn: str, tmp_path: Path, primary_dsn: str
) -> None:
    run_sql(primary_dsn, TICKETS_DDL, "INSERT INTO tickets VALUES (1, 'acme', 'Hi', 'Help me.')")
    pipeline = {"sources": [source_settings(primary_dsn)], "worker": {"id": "gateway-1"}}
    with MockUpstream("mock") as upstream:
        settings = gateway_settings(pg_dsn, tmp_path, upstream, pipeline=pipeline)
        with LiveGateway(settings) as gateway:
            report = _owned_report(gateway)
            unknown = gateway.admin("GET", "/pipeline/status", params={"source": "nope"})
            with gateway.http(gateway.admin_key) as http:
                scrape = http.get("/metrics").text
            user = gateway.create_key()
            with gateway.http(user) as http:
                forbidden = http.get("/admin/pipeline/status")
    owner = report["owner"]
    assert (owner["worker"], owner["live"], owner["acquisitions"]) == ("gateway-1", True, 1)
    assert owner["since"] and report["slot"]["active"] and report["backfilled_at"]
    assert unknown.status_code == 400
    assert "no pipeline source named ['nope']" in unknown.json()["error"]["message"]
    assert forbidden.status_code == 403
    assert 'strata:pipeline_source_owned{source="tickets"} 1.0' in scrape
    assert 'strata:pipeline_ownership_changes_total{change="acquired",source="tickets"}' in scrape
