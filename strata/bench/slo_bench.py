"""`strata bench slo`: does SLO-aware batching keep its promise on real load?

Each configuration runs as a real `strata engine serve` process on a loopback port, loaded by
`strata.bench.loadgen` over HTTP (streaming chat completions), the bundled model, default dtype.

1. *Overload.* A Poisson-rate sweep on the fixed default engine finds the highest rate R whose
   p95 TTFT holds the SLO. Then 1.3 x R is offered to the SLO-steered engine (and, for
   contrast, to the fixed one): admitted requests should keep p95 TTFT within the SLO while
   the excess is shed with 503.
2. *Phases.* Short chat turns, then long prompts, then a mix, at one offered rate: goodput
   (requests meeting the TTFT SLO per second) of the SLO-steered engine against fixed batch
   caps.

    strata bench slo --slo-ttft-ms 500 --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from strata.bench.loadgen import run_load
from strata.bench.records import RequestRecord
from strata.bench.server_process import free_port, wait_healthy
from strata.bench.shapes import Budget, PoissonRate
from strata.bench.slo import Slo
from strata.bench.summary import summarize
from strata.bench.sweep import SweepPlan, run_sweep
from strata.bench.workload import LogNormal, Uniform, Workload

PHASES = {
    "short chat": Workload(Uniform(20, 60), Uniform(16, 48), seed=11),
    "long prompts": Workload(Uniform(500, 900), Uniform(8, 24), seed=12),
    "mixed": Workload(LogNormal(80, 0.9, 20, 900), Uniform(16, 96), seed=13),
}
CHAT = Workload(Uniform(20, 120), Uniform(16, 96), seed=7)


@contextmanager
def engine_server(settings: dict[str, str], data_dir: Path) -> Iterator[Any]:
    """A `strata engine serve` process with `settings` as STRATA_* variables; yields a Target."""
    from strata.bench.client import Target

    port, token = free_port(), secrets.token_urlsafe(16)
    env = {**os.environ, "STRATA_DATA_DIR": str(data_dir), "STRATA_ENGINE_SERVER__TOKEN": token}
    env.update(settings)
    strata = Path(sys.executable).parent / "strata"
    cmd = [str(strata), "engine", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, timeout_s=180)
        yield Target(f"{url}/v1", token, timeout_s=120.0)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def fixed(cap: int) -> dict[str, str]:
    return {"STRATA_ENGINE__MAX_NUM_SEQS": str(cap), "STRATA_SLO__ENABLED": "false"}


def steered(slo_ms: float) -> dict[str, str]:
    return {"STRATA_SLO__ENABLED": "true", "STRATA_SLO__TTFT_P95_MS": str(slo_ms)}


# -- measurements ------------------------------------------------------------------------------


def outcome(records: list[RequestRecord], duration_s: float, slo_ms: float) -> dict[str, Any]:
    """One configuration's row, from the load generator's `Summary`; 503s (shed) apart."""
    s = summarize(records, duration_s, Slo(ttft_ms=slo_ms))
    shed = s.errors.get("503", 0)
    return {
        "sent": s.requests,
        "admitted_ok": s.succeeded,
        "shed_503": shed,
        "other_errors": s.failed - shed,
        "ttft_p50_ms": None if s.ttft_ms.count == 0 else round(s.ttft_ms.p50, 1),
        "ttft_p95_ms": None if s.ttft_ms.count == 0 else round(s.ttft_ms.p95, 1),
        "goodput_rps": round(s.goodput or 0.0, 3),
        "duration_s": round(duration_s, 1),
    }


async def sustainable_rate(target: Any, slo_ms: float, seconds: float) -> dict[str, Any]:
    """Each probe sends for `seconds`: long enough to leave the first burst behind, so a rate
    holds only if the engine keeps up with it."""
    plan = SweepPlan(start_rate=0.5, min_rate=0.05, refine_steps=3, tolerance=0.15)
    sweep = await run_sweep(target, CHAT, Slo(ttft_ms=slo_ms), plan, Budget(duration_s=seconds))
    probes = [{"rate": round(p.rate, 3), "held": p.held} for p in sweep.probes]
    return {"rate": sweep.best_rate or 0.0, "probes": probes}


async def offered(
    target: Any, workload: Workload, rate: float, seconds: float, slo_ms: float, first: int = 0
) -> tuple[list[RequestRecord], float]:
    result = await run_load(
        target, workload, PoissonRate(rate, seed=first), Slo(ttft_ms=slo_ms),
        budget=Budget(duration_s=seconds), first_index=first,
    )  # fmt: skip
    return result.records, result.duration_s


async def phased(target: Any, rate: float, seconds: float, slo_ms: float) -> dict[str, Any]:
    records: list[RequestRecord] = []
    duration = 0.0
    per_phase = {}
    for i, (name, workload) in enumerate(PHASES.items()):
        phase_records, phase_s = await offered(target, workload, rate, seconds, slo_ms, i * 1000)
        per_phase[name] = outcome(phase_records, phase_s, slo_ms)
        records += phase_records
        duration += phase_s
    return {"total": outcome(records, duration, slo_ms), "phases": per_phase}


def run(args: argparse.Namespace) -> dict[str, Any]:
    slo_ms = args.slo_ttft_ms
    report: dict[str, Any] = {"slo_ttft_p95_ms": slo_ms}
    with tempfile.TemporaryDirectory() as tmp:
        data = _data_dir(Path(tmp))
        with engine_server(fixed(32), data) as target:
            sweep = asyncio.run(sustainable_rate(target, slo_ms, args.probe_seconds))
            rate = max(sweep["rate"], 0.1)
            report["sweep_fixed_default"] = sweep
            over = asyncio.run(
                offered(target, CHAT, 1.3 * rate, args.overload_seconds, slo_ms, 9000)
            )
            report["overload_fixed"] = outcome(*over, slo_ms)
        _log(report)
        with engine_server(steered(slo_ms), data) as target:
            over = asyncio.run(
                offered(target, CHAT, 1.3 * rate, args.overload_seconds, slo_ms, 9000)
            )
            report["overload_slo"] = outcome(*over, slo_ms)
        _log(report)
        report["phase_rate"] = round(rate * args.phase_load, 3)
        report["phased"] = {}
        for name, settings in [("slo", steered(slo_ms))] + [
            (f"cap {c}", fixed(c)) for c in args.caps
        ]:
            with engine_server(settings, data) as target:
                result = asyncio.run(
                    phased(target, rate * args.phase_load, args.phase_seconds, slo_ms)
                )
            report["phased"][name] = result
            _log(report)
    return report


def _data_dir(tmp: Path) -> Path:
    """A fresh data dir whose model cache reuses the converted bundled model."""
    from strata.engine.loader import resolve_model_folder

    folder = resolve_model_folder(None, Path(".strata/models"))
    (tmp / "models").mkdir()
    (tmp / "models" / folder.name).symlink_to(folder.resolve())
    return tmp


def _log(report: dict[str, Any]) -> None:
    print(json.dumps(report)[-600:], file=sys.stderr, flush=True)


# -- report ------------------------------------------------------------------------------------


def markdown(report: dict[str, Any], command: str) -> str:
    slo = report["slo_ttft_p95_ms"]
    sweep = report["sweep_fixed_default"]
    lines = [
        "# SLO-aware batching under real load",
        "",
        f"Command: `{command}` ({time.strftime('%Y-%m-%d %H:%M')}). Each configuration is a real "
        "`strata engine serve` process (bundled SmolLM2, default dtype) loaded over HTTP by "
        f"`strata.bench.loadgen` (streaming chat). SLO: p95 TTFT ≤ {slo:.0f} ms.",
        "",
        f"Highest Poisson rate the fixed default engine (cap 32) sustains: **{sweep['rate']:.3f} "
        f"req/s** (probes: {_probes(sweep['probes'])}).",
        "",
        "## Overload: 1.3 x that rate",
        "",
        _outcome_table(
            {"fixed (cap 32)": report["overload_fixed"], "SLO-steered": report["overload_slo"]}
        ),
        "",
        f"## Phases (short chat → long prompts → mixed) at {report['phase_rate']} req/s",
        "",
        _outcome_table({k: v["total"] for k, v in report["phased"].items()}),
    ]  # fmt: skip
    best_fixed = max(v["total"]["goodput_rps"] for k, v in report["phased"].items() if k != "slo")
    slo_goodput = report["phased"]["slo"]["total"]["goodput_rps"]
    ratio = slo_goodput / best_fixed if best_fixed else float("inf")
    lines += ["", f"Goodput, SLO-steered vs best fixed cap: {ratio:.2f}x.", ""]
    return "\n".join(lines)


def _probes(probes: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['rate']} {'held' if p['held'] else 'failed'}" for p in probes)


def _outcome_table(rows: dict[str, dict[str, Any]]) -> str:
    head = (
        "| configuration | sent | ok | shed (503) | other errors | TTFT p50 ms | TTFT p95 ms "
        "| goodput req/s |"
    )
    out = [head, "|---|---|---|---|---|---|---|---|"]
    for name, o in rows.items():
        out.append(
            f"| {name} | {o['sent']} | {o['admitted_ok']} | {o['shed_503']} | {o['other_errors']} "
            f"| {o['ttft_p50_ms']} | {o['ttft_p95_ms']} | {o['goodput_rps']} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--slo-ttft-ms", type=float, default=500.0)
    parser.add_argument("--probe-seconds", type=float, default=25.0)
    parser.add_argument("--overload-seconds", type=float, default=40.0)
    parser.add_argument("--phase-seconds", type=float, default=20.0)
    parser.add_argument("--phase-load", type=float, default=1.0, help="phase rate / swept rate")
    parser.add_argument("--caps", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    report = run(args)
    command = "strata bench slo " + " ".join(argv)
    report["command"] = command
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "slo.json").write_text(json.dumps(report, indent=2))
    (args.out / "slo.md").write_text(markdown(report, command))
    print((args.out / "slo.md").read_text())


if __name__ == "__main__":
    main()
