"""A real NATS server with JetStream for tests: `nats-server -js` on a free loopback port, its
store in a temp dir, started and stopped by the test (never the system one on 4222).

`NatsServer.start()` waits until the port accepts connections; `stop()` terminates it (SIGTERM,
then SIGKILL). Tests skip when no `nats-server` binary is found (PATH or /usr/sbin).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

_START_TIMEOUT_S = 10.0
_FALLBACK_BINARY = Path("/usr/sbin/nats-server")


class NatsServer:
    """A `nats-server` with JetStream on 127.0.0.1, its store under `directory`."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port if port is not None else free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        assert self._process is None, "already running"
        log = self.directory / "nats.log"
        self._process = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js",
             "-sd", str(self.directory / "jetstream"), "-l", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._accepts():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"nats-server did not start on port {self.port}:\n{tail}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server; a no-op when it is not running."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nats_server_binary() -> str:
    binary = shutil.which("nats-server") or (
        str(_FALLBACK_BINARY) if _FALLBACK_BINARY.is_file() else None
    )
    if binary is None:
        pytest.skip("nats-server is not installed")
    return binary
