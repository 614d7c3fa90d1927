"""Pinning the gateway benchmark's processes to its two cores, and the tools it needs.
Starting and stopping them is `strata.bench.server_process.launched`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
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


def log_tail(log_path: Path, chars: int = 2000) -> str:
    try:
        return log_path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return ""
