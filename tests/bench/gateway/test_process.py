from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from strata.bench.gateway import GatewayBenchError
from strata.bench.gateway.process import log_tail, pinned, require_tools
from strata.bench.server_process import launched

ALL_FOUND = {"wrk": "/usr/bin/wrk", "nginx": "/usr/sbin/nginx", "taskset": "/usr/bin/taskset"}


def test_pinned() -> None:
    assert pinned(1, ["nginx", "-t"]) == ["taskset", "-c", "1", "nginx", "-t"]


def test_require_tools_names_the_apt_packages() -> None:
    which = {**ALL_FOUND, "wrk": None, "taskset": None}
    with pytest.raises(GatewayBenchError) as err:
        require_tools(which)
    assert "missing wrk, taskset" in str(err.value)
    assert "sudo apt-get install -y util-linux wrk" in str(err.value)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_require_tools_passes_with_everything() -> None:
    require_tools(ALL_FOUND)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_launched_stops_the_child_and_what_it_started(tmp_path: Path) -> None:
    grandchild = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " \
        "'import time; time.sleep(60)']); print('up', flush=True); time.sleep(60)"  # fmt: skip
    log = tmp_path / "child.log"
    with launched([sys.executable, "-c", grandchild], log) as proc:
        while "up" not in log_tail(log):
            time.sleep(0.05)
        group = proc.pid
    assert proc.returncode is not None
    deadline = time.monotonic() + 10
    while _group_alive(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group_alive(group)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_log_tail_of_a_missing_log_is_empty(tmp_path: Path) -> None:
    assert log_tail(tmp_path / "nope.log") == ""
