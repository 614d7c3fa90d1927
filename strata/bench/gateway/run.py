"""The measurement loop: mock up, then per system: start it, probe it, and for each mode and
connection count run a short warm-up and a measured wrk run, reading CPU around the latter.

A cell's CPU columns: the client core's busy share (whatever ran there), the CPU that wrk and
the mock themselves used (1.0 = one core's worth: the client, not the system, set the pace),
the gateway core's busy share, and the gateway process trees CPU time per request.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from strata.bench.gateway import GatewayBenchError
from strata.bench.gateway.cpu import (
    CoreTicks,
    busy_share,
    read_cores,
    reaped_children_cpu_s,
    tree_cpu_s,
)
from strata.bench.gateway.mock import Mock, run_mock
from strata.bench.gateway.modes import MODES, Mode
from strata.bench.gateway.process import CLIENT_CORE, GATEWAY_CORE
from strata.bench.gateway.systems import SYSTEMS, Endpoint
from strata.bench.gateway.wrk import WrkResult, lua_script, run_wrk


@dataclass(frozen=True)
class Plan:
    systems: tuple[str, ...]
    concurrency: tuple[int, ...]
    duration_s: float  # per measured cell
    warmup_s: float  # per cell, before measuring; 0 for none
    chunks: int  # content events per streamed answer


@dataclass(frozen=True)
class Cell:
    system: str
    mode: str
    concurrency: int
    wrk: WrkResult
    client_core_busy: float  # 0..1 of the client core, whatever ran there
    client_cpu_share: float  # wrk + mock CPU time / wall time: 1.0 is one core's worth
    gateway_core_busy: float  # 0..1 of the gateway core, whatever ran there
    gateway_cpu_share: float | None  # the gateway's own CPU time / wall time; None for direct
    gateway_cpu_ms_per_request: float | None  # None for the direct baseline

    @property
    def foreign_share(self) -> float:
        """The most of either core that processes other than the measured ones used: noise."""
        client = self.client_core_busy - self.client_cpu_share
        return max(client, self.gateway_core_busy - (self.gateway_cpu_share or 0.0))


@dataclass(frozen=True)
class RunResult:
    plan: Plan
    cells: list[Cell]
    notes: dict[str, dict[str, str]]  # system -> how it was set up
    load_before: tuple[float, float, float]  # 1, 5, 15 min load averages, to judge noise
    load_after: tuple[float, float, float]
    wall_s: float


@dataclass(frozen=True)
class Snapshot:
    at: float  # time.monotonic()
    cores: dict[int, CoreTicks]
    client_cpu_s: float
    gateway_cpu_s: float | None


def snapshot(mock: Mock, endpoint: Endpoint) -> Snapshot:
    """CPU counters now. wrk's CPU shows up once it has been waited for, as a reaped child."""
    gateway = sum(tree_cpu_s(pid) for pid in endpoint.pids) if endpoint.pids else None
    client = reaped_children_cpu_s() + tree_cpu_s(mock.pid)
    return Snapshot(time.monotonic(), read_cores(), client, gateway)


def gateway_cpu_s(a: Snapshot, b: Snapshot) -> float | None:
    if a.gateway_cpu_s is None or b.gateway_cpu_s is None:
        return None
    return b.gateway_cpu_s - a.gateway_cpu_s


def probe(endpoint: Endpoint, mode: Mode) -> None:
    """One request through `endpoint`; GatewayBenchError unless it answers like OpenAI."""
    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    url = endpoint.chat_url(mode)
    r = httpx.post(url, content=mode.request_body(), headers=headers, timeout=30)
    expected = "data: [DONE]" if mode.stream else '"choices"'
    if r.status_code != 200 or expected not in r.text:
        detail = f"{r.status_code} {r.text[:500]}"
        raise GatewayBenchError(f"{endpoint.system} {mode.name} probe failed: {detail}")


def measure(
    mock: Mock, endpoint: Endpoint, mode: Mode, script: Path, connections: int, plan: Plan
) -> Cell:
    """A warm-up run, then the measured run with CPU counters read around it."""
    url = endpoint.chat_url(mode)
    if plan.warmup_s > 0:
        run_wrk(url, script, connections, plan.warmup_s)
    a = snapshot(mock, endpoint)
    result = run_wrk(url, script, connections, plan.duration_s)
    b = snapshot(mock, endpoint)
    wall, gateway = max(b.at - a.at, 1e-9), gateway_cpu_s(a, b)
    return Cell(
        endpoint.system,
        mode.name,
        connections,
        result,
        client_core_busy=busy_share(a.cores, b.cores, CLIENT_CORE),
        client_cpu_share=(b.client_cpu_s - a.client_cpu_s) / wall,
        gateway_core_busy=busy_share(a.cores, b.cores, GATEWAY_CORE),
        gateway_cpu_share=None if gateway is None else gateway / wall,
        gateway_cpu_ms_per_request=_per_request_ms(gateway, result.requests),
    )


def _per_request_ms(cpu_s: float | None, requests: int) -> float | None:
    return None if cpu_s is None or requests == 0 else cpu_s * 1000 / requests


def measure_system(mock: Mock, endpoint: Endpoint, plan: Plan, workdir: Path) -> Iterator[Cell]:
    for mode in MODES:
        probe(endpoint, mode)
        script = workdir / f"{mode.prefix.strip('/')}.lua"
        script.write_text(lua_script(mode.request_body(), endpoint.api_key))
        for connections in plan.concurrency:
            cell = measure(mock, endpoint, mode, script, connections, plan)
            _log(cell)
            yield cell


def run(plan: Plan, workdir: Path) -> RunResult:
    """Every cell of `plan`, systems one after another, all in front of one mock."""
    start, load_before = time.monotonic(), os.getloadavg()
    cells: list[Cell] = []
    notes: dict[str, dict[str, str]] = {}
    with run_mock(workdir / "mock", plan.chunks) as mock:
        for name in plan.systems:
            system_dir = workdir / name
            system_dir.mkdir()
            with SYSTEMS[name](mock, system_dir) as endpoint:
                notes[name] = endpoint.notes
                cells += measure_system(mock, endpoint, plan, system_dir)
    return RunResult(plan, cells, notes, load_before, os.getloadavg(), time.monotonic() - start)


def _log(cell: Cell) -> None:
    w = cell.wrk
    print(
        f"{cell.system:>12} {cell.mode:>13} c={cell.concurrency:<3} {w.requests_per_s:9.1f} req/s "
        f"p50 {w.p50_ms:8.3f} ms p99 {w.p99_ms:8.3f} ms errors {w.errors.total} "
        f"client core {cell.client_core_busy:4.0%} (wrk+mock {cell.client_cpu_share:4.0%}) "
        f"gateway core {cell.gateway_core_busy:4.0%}",
        file=sys.stderr, flush=True,
    )  # fmt: skip
