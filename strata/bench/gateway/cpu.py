"""CPU use from /proc: how busy each core was, and how much CPU a process tree spent.

A core's busy share comes from two /proc/stat snapshots (`cpuN` lines, in clock ticks):
busy = total - idle - iowait, where total sums user..steal (guest time is already inside
user and nice, so it is not added twice). A process tree's CPU is the sum of utime + stime over
the root and its live descendants (/proc/<pid>/stat fields 14 and 15).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CoreTicks:
    busy: int
    total: int


def parse_proc_stat(text: str) -> dict[int, CoreTicks]:
    """Per-core tick counters from the text of /proc/stat (the `cpuN` lines only)."""
    cores = {}
    for line in text.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name != "cpu":
            ticks = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
            idle = ticks[3] + ticks[4]
            cores[int(name[3:])] = CoreTicks(busy=sum(ticks) - idle, total=sum(ticks))
    return cores


def read_cores() -> dict[int, CoreTicks]:
    return parse_proc_stat((PROC / "stat").read_text())


def busy_share(before: Mapping[int, CoreTicks], after: Mapping[int, CoreTicks], core: int) -> float:
    """Share of `core`'s time spent busy between two snapshots, 0..1 (0 if no time passed)."""
    a, b = before[core], after[core]
    elapsed = b.total - a.total
    return (b.busy - a.busy) / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    cpu_ticks: int  # utime + stime


def parse_pid_stat(text: str) -> ProcStat:
    """One /proc/<pid>/stat line. The command name sits in parentheses and may hold spaces or
    parentheses itself, so the fields are counted after the last ')'."""
    head, _, tail = text.rpartition(")")
    rest = tail.split()  # rest[0] is field 3 (state)
    pid, ppid, ticks = int(head.split("(", 1)[0]), int(rest[1]), int(rest[11]) + int(rest[12])
    return ProcStat(pid, ppid, ticks)


def _all_procs() -> Iterator[ProcStat]:
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            try:
                yield parse_pid_stat((entry / "stat").read_text())
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue  # exited while we looked


def tree_ticks(root: int, procs: Iterable[ProcStat]) -> int:
    """CPU ticks of `root` and every descendant among `procs`."""
    by_parent: dict[int, list[ProcStat]] = {}
    own = 0
    for p in procs:
        by_parent.setdefault(p.ppid, []).append(p)
        own += p.cpu_ticks if p.pid == root else 0
    stack, total = [root], own
    while stack:
        for child in by_parent.get(stack.pop(), []):
            total += child.cpu_ticks
            stack.append(child.pid)
    return total


def tree_cpu_s(root: int) -> float:
    """CPU seconds spent so far by process `root` and its live descendants."""
    return tree_ticks(root, _all_procs()) / TICKS_PER_S


def reaped_children_cpu_s() -> float:
    """CPU seconds of this process's children that have exited and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
