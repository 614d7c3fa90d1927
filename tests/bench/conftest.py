"""A real strata engine server with a tiny random model, shared by the benchmark tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strata.bench.client import Target
from tests.support.live_server import TOKEN, LiveServer, make_engine


@pytest.fixture(scope="session")
def bench_server(
    tiny_llama_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    engine = make_engine(tiny_llama_folder, tmp_path_factory.mktemp("bench-cache"))
    with LiveServer(engine) as server:
        yield server


@pytest.fixture
def target(bench_server: LiveServer) -> Target:
    return Target(f"{bench_server.url}/v1", api_key=TOKEN)
