"""Real Redis for tests: one `redis-server` per test session, flushed before each test.

Fixtures (registered for every test through `pytest_plugins` in tests/conftest.py):

- `redis_server` (session): a `RedisServer` on a free loopback port, working in a temp dir,
  persisting nothing (`--save "" --appendonly no`), stopped when the session ends. Most tests
  want `redis_url` instead.
- `redis_url` (function): the session server's URL (`redis://127.0.0.1:<port>/0`) after a
  FLUSHALL, so each test starts from an empty Redis. Tests share the one server, so they must
  not run in parallel within a session (no pytest-xdist on it).
- `own_redis_server` (function): a private `RedisServer` for this test alone, which the test
  may `stop()` and `start()` again (same port, same URL) to exercise outages; stopped after.

Each skips the test when no `redis-server` binary is on PATH. `RedisServer.client()` gives a
synchronous redis-py client for looking at what a test left in Redis.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

_START_TIMEOUT_S = 10.0


class RedisServer:
    """A `redis-server` process on 127.0.0.1, started and stopped by the caller."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port if port is not None else _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        assert not self.is_running, "already running"
        self._process = subprocess.Popen(self._command(), cwd=self.directory)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._answers_ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); a no-op when not running."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def flushall(self) -> None:
        with redis.Redis(port=self.port) as client:
            client.flushall()

    def client(self) -> redis.Redis:
        """A synchronous client for inspecting the server; close it (or use `with`)."""
        return redis.Redis(port=self.port)

    def _command(self) -> list[str]:
        return [
            _redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
        ]

    def _answers_ping(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_connect_timeout=0.2) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False


def started_server(directory: Path, attempts: int = 3) -> RedisServer:
    """A started server on a free port (another port if one is taken between pick and bind)."""
    for attempt in range(attempts):
        server = RedisServer(directory)
        try:
            server.start()
            return server
        except RuntimeError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    return binary


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's redis-server."""
    server = started_server(tmp_path_factory.mktemp("strata-redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, emptied (FLUSHALL) for this test."""
    redis_server.flushall()
    return redis_server.url


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone, which it may stop and start again."""
    directory = tmp_path / "redis"
    directory.mkdir()
    server = started_server(directory)
    yield server
    server.stop()
