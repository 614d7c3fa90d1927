"""A strata server run as a child process on a free loopback port (benchmarks and tests)."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(
    url: str,
    proc: subprocess.Popen[str] | subprocess.Popen[bytes],
    timeout_s: float,
    path: str = "/healthz",
) -> None:
    """Poll `url` + `path` until it answers 200; RuntimeError if the process exits or the
    time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(f"{url}{path}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server at {url} did not answer {path} within {timeout_s:.0f} s")
