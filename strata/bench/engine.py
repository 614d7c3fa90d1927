"""`strata bench engine`: strata's engine next to transformers on the same model, in one run.

Same weights, same requests, same machine, one command. Every system runs in its own process:
two torch thread teams in one process slow each other down on a small CPU, which would make the
comparison unfair. The run has three parts:

1. *Equal load.* A chat workload (prompts of 20–120 tokens, outputs cycling 16–256 tokens,
   greedy, exact lengths, all queued at t=0) for each system and dtype: tokens/s and latencies.
2. *Highest sustainable rate.* A Poisson-rate search, per system, for the highest rate whose
   p95 TTFT holds the SLO.
3. *Ceilings.* Memory bandwidth and matmul FLOP/s measured in the same run, and the fraction of
   them strata's decode reaches at batch 1 (bandwidth) and at batch 32 (matmul).

    python -m strata.bench.engine --dtypes float32 bfloat16 --out docs/benchmarks

With `--profile OUT.json` it measures the engine's step times instead (`strata.bench.step_profile`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from strata.bench.records import BenchRequest, RequestRecord, percentile
from strata.bench.summary import summarize as load_summary
from strata.bench.sweep import RateSearch, SweepPlan
from strata.bench.words import WORDS

OUTPUT_CYCLE = (16, 32, 64, 128, 256, 48, 96, 24)  # 664 tokens per 8 requests
PROMPT_RANGE = (20, 120)
SYSTEMS = ("strata", "hf-cb", "hf-static", "hf-generate")
SWEPT = ("strata", "hf-cb")  # one-at-a-time and static peers sustain far under 1 req/s
MODEL_CACHE = Path(".strata/models")


# -- workloads -------------------------------------------------------------------------------


def chat_workload(
    n: int, seed: int = 0, arrivals: Sequence[float] | None = None
) -> list[BenchRequest]:
    """Chat prompts of 20–120 tokens (the model's own template) with cycling output lengths."""
    from strata.engine.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_folder(model_folder())
    rng = random.Random(seed)
    requests = []
    for i in range(n):
        target = rng.randint(*PROMPT_RANGE)
        ids = _chat_ids(tokenizer, rng, target)
        arrival = arrivals[i] if arrivals is not None else 0.0
        requests.append(BenchRequest(ids, OUTPUT_CYCLE[i % len(OUTPUT_CYCLE)], arrival))
    return requests


def _chat_ids(tokenizer: Any, rng: random.Random, target: int) -> list[int]:
    words: list[str] = []
    while True:
        text = tokenizer.apply_chat_template([{"role": "user", "content": " ".join(words)}])
        ids: list[int] = tokenizer.encode(text, add_special_tokens=False)
        if len(ids) >= target:
            return ids
        words.append(rng.choice(WORDS))


def poisson_arrivals(n: int, rate: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append(t)
    return out


def model_folder() -> Path:
    from strata.engine.loader import resolve_model_folder

    return resolve_model_folder(None, MODEL_CACHE)


# -- one system in a child process -------------------------------------------------------------


def make_peer(system: str, dtype: str) -> Any:
    folder = model_folder()
    if system == "strata":
        from strata.bench.strata_peer import StrataPeer

        return StrataPeer(folder, dtype)
    from strata.bench import peers

    kinds: dict[str, Any] = {
        "hf-generate": lambda: peers.GenerateOneAtATime(folder, dtype),
        "hf-static": lambda: peers.StaticBatching(folder, dtype, batch_size=16),
        "hf-cb": lambda: peers.TransformersContinuousBatching(folder, dtype),
    }
    return kinds[system]()


def child(system: str, dtype: str, workload: Path, output: Path, roofline: bool) -> None:
    peer = make_peer(system, dtype)
    result: dict[str, Any] = {"available": peer.available()}
    if peer.available():
        requests = [BenchRequest(**r) for r in json.loads(workload.read_text())]
        result["records"] = [_record_json(r) for r in peer.run(requests)]
        if roofline:
            result["roofline"] = decode_rates(peer)
    output.write_text(json.dumps(result))


def _record_json(record: RequestRecord) -> dict[str, Any]:
    data = asdict(record)
    data.pop("token_ids")
    return data


def decode_rates(peer: Any) -> dict[str, float]:
    """Steady decode tokens/s at batch 1 and batch 32 (prefill excluded)."""
    rates = {}
    for batch in (1, 32):
        requests = [BenchRequest([1, 2 + i, 3, 4] * 8, 64) for i in range(batch)]
        records = peer.run(requests)
        begin = max(r.token_times[0] for r in records)
        end = min(r.token_times[-1] for r in records)
        decoded = sum(sum(1 for t in r.token_times if begin < t <= end) for r in records)
        rates[f"batch{batch}_tok_s"] = decoded / (end - begin)
    return rates


def run_child(
    system: str, dtype: str, requests: list[BenchRequest], roofline: bool = False
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        workload, output = Path(tmp) / "workload.json", Path(tmp) / "records.json"
        workload.write_text(json.dumps([asdict(r) for r in requests]))
        cmd = [sys.executable, "-m", "strata.bench.engine", "--child", system, "--dtypes", dtype,
               "--workload", str(workload), "--records", str(output)]  # fmt: skip
        if roofline:
            cmd.append("--roofline")
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        result: dict[str, Any] = json.loads(output.read_text())
    result["records"] = [RequestRecord(**r) for r in result.get("records", [])]
    return result


# -- summaries -------------------------------------------------------------------------------


def summarize(records: list[RequestRecord]) -> dict[str, float]:
    """The equal-load row: the load generator's `Summary`, in seconds, over the wall time."""
    first = min(r.sent for r in records)
    last = max(r.finished or r.sent for r in records)
    s = load_summary(records, last - first, slo=None)
    return {
        "requests": s.requests,
        "output_tokens": s.output_tokens,
        "wall_s": round(s.duration_s, 2),
        "tok_s": round(s.output_throughput, 1),
        "ttft_p50_s": round(s.ttft_ms.p50 / 1000, 2),
        "ttft_p95_s": round(s.ttft_ms.p95 / 1000, 2),
        "e2e_p50_s": round(s.e2e_ms.p50 / 1000, 2),
        "e2e_p95_s": round(s.e2e_ms.p95 / 1000, 2),
    }


def max_sustainable_rate(system: str, dtype: str, args: argparse.Namespace) -> dict[str, Any]:
    """Highest Poisson rate whose p95 TTFT holds `args.slo_ttft_ms`, by doubling then bisection."""
    search = RateSearch(SweepPlan(start_rate=args.sweep_start, min_rate=0.05, refine_steps=3))
    probes: list[dict[str, Any]] = []
    while (rate := search.next_rate()) is not None:
        arrivals = poisson_arrivals(args.sweep_requests, rate, seed=len(probes) + 1)
        requests = chat_workload(args.sweep_requests, seed=100 + len(probes), arrivals=arrivals)
        records = run_child(system, dtype, requests)["records"]
        p95 = percentile([r.ttft or 0.0 for r in records], 95) * 1000
        held = p95 <= args.slo_ttft_ms
        search.record(rate, held)
        probes.append({"rate": round(rate, 3), "ttft_p95_ms": round(p95, 1), "held": held})
        print(f"  {system} {dtype} rate {rate:.3f}/s: p95 TTFT {p95:.0f} ms", file=sys.stderr)
    return {"best_rate": search.held or 0.0, "probes": probes}


# -- the run ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(arg == "--profile" or arg.startswith("--profile=") for arg in argv):
        from strata.bench.step_profile import main as profile_main

        profile_main(argv)  # the step-time profile for `strata plan batching`
        return
    args = parse_args(argv)
    if args.child:
        child(args.child, args.dtypes[0], args.workload, args.records, args.roofline)
        return
    report = run(args)
    write_report(args, report, "strata bench engine " + " ".join(argv))
    print((args.out / "engine.md").read_text())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--slo-ttft-ms", type=float, default=500.0)
    parser.add_argument("--sweep-requests", type=int, default=24)
    parser.add_argument("--sweep-start", type=float, default=0.5)
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--child", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--workload", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--records", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--roofline", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from strata.bench.ceilings import measure_ceilings, model_bounds

    ceilings = measure_ceilings()
    workload = chat_workload(args.requests)
    report: dict[str, Any] = {
        "ceilings": asdict(ceilings),
        "equal_load": [],
        "sweeps": [],
        "roofline": {},
    }
    for dtype in args.dtypes:
        bounds = model_bounds(ceilings, model_folder(), getattr(torch, dtype))
        report["roofline"][dtype] = {"bounds": asdict(bounds)}
        for system in args.systems:
            result = run_child(system, dtype, workload, roofline=system == "strata")
            if not result["available"]:
                continue
            row = {"system": system, "dtype": dtype, **summarize(result["records"])}
            report["equal_load"].append(row)
            print(row, file=sys.stderr)
            if "roofline" in result:
                report["roofline"][dtype].update(
                    _fractions(result["roofline"], bounds, ceilings, dtype)
                )
    if not args.no_sweep:
        for system in [s for s in args.systems if s in SWEPT]:
            sweep = max_sustainable_rate(system, args.dtypes[0], args)
            report["sweeps"].append({"system": system, "dtype": args.dtypes[0], **sweep})
    return report


def _fractions(rates: dict[str, float], bounds: Any, ceilings: Any, dtype: str) -> dict[str, float]:
    gflops = ceilings.matmul_gflops_bf16 if dtype == "bfloat16" else ceilings.matmul_gflops_fp32
    achieved_gflops = rates["batch32_tok_s"] * bounds.flops_per_token / 1e9
    return {
        **{k: round(v, 1) for k, v in rates.items()},
        "batch1_of_bandwidth_bound": round(rates["batch1_tok_s"] / bounds.decode_bound_tok_s, 3),
        "batch32_of_matmul_ceiling": round(achieved_gflops / gflops, 3),
    }


# -- the report ------------------------------------------------------------------------------


def write_report(args: argparse.Namespace, report: dict[str, Any], command: str) -> None:
    report["meta"] = {
        "command": command,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "model": "SmolLM2-135M-Instruct (bundled GGUF Q4_1, dequantized)",
        "workload": f"{args.requests} chat requests, prompts {PROMPT_RANGE[0]}-{PROMPT_RANGE[1]} "
        f"tokens, outputs cycling {list(OUTPUT_CYCLE)}, greedy, exact lengths, all at t=0",
        "slo_ttft_p95_ms": args.slo_ttft_ms,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engine.json").write_text(json.dumps(report, indent=2))
    (args.out / "engine.md").write_text(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        "# Engine benchmark: strata vs transformers, same model, same run",
        "",
        f"Command: `{meta['command']}` ({meta['date']}; {meta['machine']}).",
        f"Model: {meta['model']}. Workload: {meta['workload']}.",
        "",
        "## Equal load",
        "",
        "| dtype | system | output tok/s | vs hf-generate | vs hf-cb | TTFT p50 s | TTFT p95 s "
        "| E2E p50 s | E2E p95 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in report["equal_load"]:
        lines.append(_equal_load_row(row, report["equal_load"]))
    lines += ["", f"## Highest Poisson rate with p95 TTFT ≤ {meta['slo_ttft_p95_ms']:.0f} ms", ""]
    lines += ["| system | dtype | requests/s | probes (rate: p95 TTFT ms) |", "|---|---|---|---|"]
    for sweep in report["sweeps"]:
        probes = ", ".join(f"{p['rate']}: {p['ttft_p95_ms']:.0f}" for p in sweep["probes"])
        lines.append(
            f"| {sweep['system']} | {sweep['dtype']} | {sweep['best_rate']:.3f} | {probes} |"
        )
    lines += _ceiling_lines(report)
    return "\n".join(lines) + "\n"


def _equal_load_row(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    def ratio(peer: str) -> str:
        base = next((r for r in rows if r["system"] == peer and r["dtype"] == row["dtype"]), None)
        return f"{row['tok_s'] / base['tok_s']:.1f}x" if base else "n/a"

    return (
        f"| {row['dtype']} | {row['system']} | {row['tok_s']} | {ratio('hf-generate')} | "
        f"{ratio('hf-cb')} | {row['ttft_p50_s']} | {row['ttft_p95_s']} | {row['e2e_p50_s']} | "
        f"{row['e2e_p95_s']} |"
    )


def _ceiling_lines(report: dict[str, Any]) -> list[str]:
    c = report["ceilings"]
    lines = [
        "",
        "## This machine's ceilings and strata's share of them",
        "",
        f"Measured in this run: memory bandwidth {c['bandwidth_gbps']:.1f} GB/s (copy, read + "
        f"write); matmul {c['matmul_gflops_fp32']:.0f} GFLOP/s fp32, "
        f"{c['matmul_gflops_bf16']:.0f} GFLOP/s bf16.",
        "",
        "| dtype | batch-1 decode bound tok/s | strata batch-1 tok/s | share "
        "| strata batch-32 tok/s | share of matmul ceiling |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for dtype, r in report["roofline"].items():
        if "batch1_tok_s" not in r:
            continue
        lines.append(
            f"| {dtype} | {r['bounds']['decode_bound_tok_s']:.1f} | {r['batch1_tok_s']} | "
            f"{r['batch1_of_bandwidth_bound']:.0%} | {r['batch32_tok_s']} | "
            f"{r['batch32_of_matmul_ceiling']:.0%} |"
        )
    return lines


if __name__ == "__main__":
    main()
