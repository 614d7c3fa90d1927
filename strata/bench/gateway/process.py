"""Child processes pinned to one core, started in their own session and always stopped.

Each child gets its own process group, so stopping it also stops what it started (nginx
workers, strata's embedded PostgreSQL) and nothing else.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from strata.bench.gateway import GatewayBenchError

CLIENT_CORE = 0  # wrk and the mock upstream
GATEWAY_CORE = 1  # the gateway under test
TOOLS = {"wrk": "wrk", "nginx": "nginx", "taskset": "util-linux"}  # command -> Debian package


def pinned(core: int, cmd: Sequence[str]) -> list[str]:
    return ["taskset", "-c", str(core), *cmd]


def require_tools(which: Mapping[str, str | None] | None = None) -> None:
    """GatewayBenchError naming the apt packages to install when a tool is missing, and when
    this machine has fewer than two cores to pin to."""
    found = which if which is not None else {tool: shutil.which(tool) for tool in TOOLS}
    missing = [tool for tool in TOOLS if not found.get(tool)]
    if missing:
        packages = " ".join(sorted({TOOLS[t] for t in missing}))
        raise GatewayBenchError(
            f"missing {', '.join(missing)}; install with: sudo apt-get install -y {packages}"
        )
    cores = os.sched_getaffinity(0)
    if not {CLIENT_CORE, GATEWAY_CORE} <= cores:
        raise GatewayBenchError(f"needs cores {CLIENT_CORE} and {GATEWAY_CORE}; has {cores}")


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


def log_tail(log_path: Path, chars: int = 2000) -> str:
    try:
        return log_path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""
