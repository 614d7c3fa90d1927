"""A live gateway in front of a mock upstream, on a fresh database, for the gateway's HTTP tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strata.config import Settings
from tests.support.live_gateway import LiveGateway
from tests.support.mock_upstream import MockUpstream


def gateway_settings(
    pg_dsn: str, data_dir: Path, *upstreams: MockUpstream | dict[str, Any], **sections: Any
) -> Settings:
    """Settings for a gateway without the built-in engine, routing to `upstreams`."""
    listed = [
        u if isinstance(u, dict) else {"name": u.name, "url": u.url, "models": list(u.models)}
        for u in upstreams
    ]
    gateway = {"engine": False, **sections.pop("gateway", {})}
    return Settings(
        data_dir=data_dir,
        store={"dsn": pg_dsn},
        gateway=gateway,
        upstreams=listed,
        **sections,
    )


@pytest.fixture(scope="module")
def mock_upstream() -> Iterator[MockUpstream]:
    with MockUpstream("mock", models=("mock-model",)) as upstream:
        yield upstream


@pytest.fixture
def upstream(mock_upstream: MockUpstream) -> MockUpstream:
    mock_upstream.reset()
    return mock_upstream


@pytest.fixture
def gateway(pg_dsn: str, tmp_path: Path, upstream: MockUpstream) -> Iterator[LiveGateway]:
    settings = gateway_settings(pg_dsn, tmp_path, upstream, gateway={"ledger_flush_ms": 20})
    with LiveGateway(settings) as live:
        yield live
