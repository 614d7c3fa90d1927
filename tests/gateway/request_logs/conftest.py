"""A live gateway with request logs written every 20 ms and the opted-in set re-read every
0.2 s, in front of the mock upstream; tenant acme is logged, beta is not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.conftest import gateway_settings
from tests.gateway.request_logs.support import Logged
from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream


@pytest.fixture
def logged(pg_dsn: str, tmp_path: Path, upstream: MockUpstream) -> Iterator[Logged]:
    settings = gateway_settings(
        pg_dsn, tmp_path, upstream,
        gateway={"ledger_flush_ms": 20},
        request_logs={"flush_ms": 20, "refresh_s": 0.2},
        # acme's guard lets secrets and PII through to the upstream: the logs redact anyway
        guard={"tenants": {"acme": {"secrets": "flag", "pii": "off"}}},
    )  # fmt: skip
    with LiveGateway(settings) as live:
        acme, beta = live.create_key("acme", "alice"), live.create_key("beta", "bob")
        reply = live.admin("PUT", "/logging/acme", json={"enabled": True})
        assert reply.status_code == 200, reply.text
        yield Logged(live, upstream, pg_dsn, acme, beta)
