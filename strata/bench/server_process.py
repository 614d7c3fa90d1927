"""Servers run as child processes for benchmarks and tests: free loopback ports, waiting until
one answers, and starting one in its own session so that stopping it also stops whatever it
started (nginx workers, an embedded PostgreSQL) and nothing else."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

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


@contextmanager
def launched(
    cmd: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` with stdout and stderr into `log_path`; stop its process group on exit."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(cmd), stdout=log, stderr=subprocess.STDOUT, env=dict(env or os.environ),
            start_new_session=True,
        )  # fmt: skip
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """SIGTERM to the child's process group, SIGKILL if it is still there after `timeout_s`."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout_s)
    # Children that outlive their leader keep its group id (its pid): ask them to stop too.
    _signal_group(proc.pid, signal.SIGTERM)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
