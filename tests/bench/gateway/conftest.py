"""Shared by the gateway benchmark tests: skip what needs Debian's nginx or wrk when absent."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from strata.bench.gateway.mock import Mock, run_mock

needs_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None, reason="needs nginx: sudo apt-get install -y nginx"
)
needs_wrk = pytest.mark.skipif(
    shutil.which("wrk") is None or shutil.which("taskset") is None,
    reason="needs wrk and taskset: sudo apt-get install -y wrk util-linux",
)


@pytest.fixture
def mock(tmp_path: Path) -> Iterator[Mock]:
    """A real nginx mock upstream with 20-chunk streams."""
    if shutil.which("nginx") is None or shutil.which("taskset") is None:
        pytest.skip("needs nginx and taskset: sudo apt-get install -y nginx util-linux")
    with run_mock(tmp_path / "mock", chunks=20) as running:
        yield running
