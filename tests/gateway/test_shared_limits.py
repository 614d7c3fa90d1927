"""Limits shared through Redis hold across gateway processes: two `strata serve` processes, one
real redis-server started by the test, one PostgreSQL database, one budget."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from strata.bench.server_process import free_port, wait_healthy
from tests.gateway.test_pipeline import CHAT, PER_REQUEST
from tests.support.mock_upstream import MockUpstream
from tests.support.redis_server import RedisServer

STRATA = str(Path(sys.executable).parent / "strata")


def _config(tmp_path: Path, pg_dsn: str, redis_url: str, upstream: MockUpstream) -> Path:
    path = tmp_path / "strata.yaml"
    settings = {
        "data_dir": str(tmp_path / "data"),
        "store": {"dsn": pg_dsn},
        "redis_url": redis_url,
        "gateway": {"engine": False},
        "upstreams": [{"name": "mock", "url": upstream.url, "models": ["mock-model"]}],
    }
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture
def two_gateways(
    tmp_path: Path, pg_dsn: str, own_redis_server: RedisServer, mock_upstream: MockUpstream
) -> Iterator[tuple[list[str], Path]]:
    mock_upstream.reset()
    config = _config(tmp_path, pg_dsn, own_redis_server.url, mock_upstream)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    procs, urls = [], []
    try:
        for _ in range(2):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [STRATA, "serve", "--config", str(config), "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs, strict=True):
            wait_healthy(url, proc, timeout_s=60)
        yield urls, config
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def _create_key(config: Path, **limits: int) -> str:
    options = [f"--{name.replace('_', '-')}={value}" for name, value in limits.items()]
    out = subprocess.run(
        [STRATA, "keys", "create", "--config", str(config), "--tenant", "acme", "--user", "ann",
         "--json", *options],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    key: str = json.loads(out)["key"]
    return key


async def _spread(urls: list[str], key: str, n: int) -> list[int]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=30, headers=headers) as http:
        replies = await asyncio.gather(
            *(http.post(f"{urls[i % 2]}/v1/chat/completions", json=CHAT) for i in range(n))
        )
    return sorted(r.status_code for r in replies)


@pytest.mark.slow
def test_a_budget_holds_across_two_gateway_processes(
    two_gateways: tuple[list[str], Path], mock_upstream: MockUpstream
) -> None:
    urls, config = two_gateways
    mock_upstream.stall_s = 1.0
    key = _create_key(config, monthly_tokens=5 * PER_REQUEST)
    assert asyncio.run(_spread(urls, key, 20)) == [200] * 5 + [429] * 15


@pytest.mark.slow
def test_redis_down_fails_closed_by_default(
    two_gateways: tuple[list[str], Path], own_redis_server: RedisServer
) -> None:
    urls, config = two_gateways
    key = _create_key(config, rpm=1000)
    own_redis_server.stop()
    reply = httpx.post(
        f"{urls[0]}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}
    )
    assert reply.status_code == 503 and "retry-after" in reply.headers
