from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from strata.bench.gateway.cpu import (
    CoreTicks,
    ProcStat,
    busy_share,
    parse_pid_stat,
    parse_proc_stat,
    reaped_children_cpu_s,
    tree_cpu_s,
    tree_ticks,
)

STAT = """\
cpu  48796 0 7514 123636 527 0 1058 44 0 0
cpu0 19079 0 4252 66253 251 0 868 19 0 0
cpu1 29717 0 3262 57383 276 0 190 25 5 0
intr 123 0 0
ctxt 456
"""


def test_parse_proc_stat_reads_each_core() -> None:
    cores = parse_proc_stat(STAT)
    assert set(cores) == {0, 1}
    # busy = user + nice + system + irq + softirq + steal; idle and iowait are not busy
    assert cores[0] == CoreTicks(busy=19079 + 4252 + 868 + 19, total=90722)
    assert cores[1].total - cores[1].busy == 57383 + 276  # guest (5) is not counted twice


def test_busy_share_is_the_busy_fraction_of_elapsed_ticks() -> None:
    before = {0: CoreTicks(busy=100, total=1000), 1: CoreTicks(busy=0, total=0)}
    after = {0: CoreTicks(busy=175, total=1100), 1: CoreTicks(busy=0, total=0)}
    assert busy_share(before, after, 0) == pytest.approx(0.75)
    assert busy_share(before, after, 1) == 0.0  # no time passed


def test_parse_pid_stat_with_spaces_and_parens_in_the_name() -> None:
    line = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 1 0 0 0 31 9 0 0 20 0 1 0 5 0 0"
    assert parse_pid_stat(line) == ProcStat(pid=4242, ppid=17, cpu_ticks=40)


def test_tree_ticks_sums_descendants_only() -> None:
    procs = [
        ProcStat(10, 1, 5),  # root
        ProcStat(11, 10, 7),  # child
        ProcStat(12, 11, 3),  # grandchild
        ProcStat(20, 1, 100),  # unrelated
    ]
    assert tree_ticks(10, procs) == 15
    assert tree_ticks(11, procs) == 10
    assert tree_ticks(99, procs) == 0


def test_tree_cpu_counts_a_busy_child() -> None:
    code = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    child = subprocess.Popen([sys.executable, "-c", code + "time.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while tree_cpu_s(child.pid) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tree_cpu_s(child.pid) >= 0.25
        assert tree_cpu_s(os.getpid()) >= tree_cpu_s(child.pid)  # the child is in our tree
    finally:
        child.kill()
        child.wait()


def test_reaped_children_cpu_grows_when_a_child_is_waited_for() -> None:
    before = reaped_children_cpu_s()
    code = "import time\nend = time.process_time() + 0.2\nwhile time.process_time() < end: pass"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert reaped_children_cpu_s() - before >= 0.15
