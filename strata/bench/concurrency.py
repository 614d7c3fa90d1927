"""Closed-loop concurrency: strata's engine next to Hugging Face `generate`, same run.

Same model (the bundled SmolLM2-135M-Instruct, fp32), same chat prompts, same greedy
fixed-length outputs, same machine, same thread count. For each client concurrency
(closed loop: every client sends its next request when the previous one finishes) it
reports output tokens/s and TTFT p50/p95 measured from the moment a request is sent.
`generate` serves one request at a time, so under concurrency its requests queue.

    python -m strata.bench.concurrency [--concurrency 1 4 16] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from strata.bench.records import BenchRequest, RequestRecord, percentile

if TYPE_CHECKING:
    from strata.bench.peers import GenerateOneAtATime
    from strata.bench.strata_peer import StrataPeer

QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about autumn leaves.",
    "Explain how a hash map works.",
    "Give me three tips for better sleep.",
    "What is the difference between a list and a tuple in Python?",
    "Summarize the plot of Romeo and Juliet in two sentences.",
    "Why is the sky blue?",
    "Suggest a name for a coffee shop run by robots.",
]


@dataclass(frozen=True)
class Run:
    system: str
    concurrency: int
    requests: int
    output_tokens: int
    wall_s: float
    tok_per_s: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    e2e_p50_s: float
    e2e_p95_s: float


def summarize(
    system: str, conc: int, ttfts: list[float], e2es: list[float], tokens: int, wall: float
) -> Run:
    return Run(
        system, conc, len(ttfts), tokens, round(wall, 2), round(tokens / wall, 1),
        round(percentile(ttfts, 50) * 1000, 1), round(percentile(ttfts, 95) * 1000, 1),
        round(percentile(e2es, 50), 2), round(percentile(e2es, 95), 2),
    )  # fmt: skip


def prompts(tokenizer: object, n: int) -> list[list[int]]:
    out = []
    for i in range(n):
        text = tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]
        )
        out.append(tokenizer.encode(text, add_special_tokens=False))  # type: ignore[attr-defined]
    return out


# -- strata ----------------------------------------------------------------------------------


async def strata_run(peer: StrataPeer, batch: list[list[int]], conc: int, max_tokens: int) -> Run:
    """`conc` clients, each sending its next request when its previous one finished."""
    queue = [BenchRequest(prompt, max_tokens) for prompt in batch]
    records: list[RequestRecord] = []

    async def client() -> None:
        while queue:
            records.append(await peer.serve(queue.pop(), time.perf_counter()))

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(conc)))
    return _run("strata", conc, records, time.perf_counter() - start)


# -- Hugging Face generate, one request at a time ---------------------------------------------


def hf_run(peer: GenerateOneAtATime, batch: list[list[int]], conc: int, max_tokens: int) -> Run:
    """Serve `batch` one request at a time; client k sends its next request when its last
    one finishes, so a request's wait is the time it spent queued behind others. Service
    times come from one back-to-back `generate` replay; the clients are simulated on them."""
    served = peer.run([BenchRequest(prompt, max_tokens) for prompt in batch])
    begins = [served[0].sent] + [r.finished or r.sent for r in served[:-1]]
    free_at = [0.0] * conc  # when each client sends its next request (relative seconds)
    clock = 0.0
    records = []
    for i, (record, begun) in enumerate(zip(served, begins, strict=True)):
        sent = free_at[i % conc]
        begin = max(clock, sent)
        clock = begin + (record.finished or begun) - begun
        first = begin + (record.first_token or begun) - begun
        records.append(RequestRecord(sent, first, clock, output_tokens=record.output_tokens))
        free_at[i % conc] = clock
    return _run("transformers generate (one at a time)", conc, records, clock)


def _run(system: str, conc: int, records: list[RequestRecord], wall: float) -> Run:
    ttfts = [r.ttft or 0.0 for r in records]
    e2es = [r.e2e or 0.0 for r in records]
    return summarize(system, conc, ttfts, e2es, sum(r.output_tokens for r in records), wall)


# -- main -------------------------------------------------------------------------------------

SYSTEMS = ("strata", "transformers")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--requests-per-client", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    parser.add_argument("--system", choices=SYSTEMS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.system:  # a child: measure one system, print its runs as JSON
        runs = asyncio.run(measure_strata(args) if args.system == "strata" else measure_hf(args))
        print(RESULT_MARK + json.dumps([asdict(r) for r in runs]), flush=True)
        return
    by_system = {system: run_child(system, argv) for system in SYSTEMS}
    runs = [
        r
        for conc in args.concurrency
        for s in SYSTEMS
        for r in by_system[s]
        if r.concurrency == conc
    ]
    write_report(args, runs)
    print((args.out / "engine-concurrency.md").read_text())


RESULT_MARK = "BENCH-RESULT "


def run_child(system: str, argv: list[str] | None) -> list[Run]:
    """Each system runs in its own process: two torch thread teams in one process slow
    each other down on this CPU, which would make the comparison unfair."""
    cmd = [
        sys.executable,
        "-m",
        "strata.bench.concurrency",
        *(sys.argv[1:] if argv is None else argv),
    ]
    out = subprocess.run([*cmd, "--system", system], capture_output=True, text=True, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith(RESULT_MARK))
    return [Run(**r) for r in json.loads(line[len(RESULT_MARK) :])]


def _folder() -> Path:
    from strata.engine.loader import resolve_model_folder

    return resolve_model_folder(None, MODEL_CACHE)


MODEL_CACHE = Path(".strata/models")


async def measure_strata(args: argparse.Namespace) -> list[Run]:
    from strata.bench.strata_peer import StrataPeer
    from strata.engine.tokenizer import Tokenizer

    folder = _folder()
    tokenizer = Tokenizer.from_folder(folder)
    peer = StrataPeer(folder, "float32")
    await peer.engine.start()
    try:
        runs = []
        for conc in args.concurrency:
            batch = prompts(tokenizer, max(4, conc * args.requests_per_client))
            runs.append(await strata_run(peer, batch, conc, args.max_tokens))
        return runs
    finally:
        await peer.engine.stop()


async def measure_hf(args: argparse.Namespace) -> list[Run]:
    from strata.bench.peers import GenerateOneAtATime
    from strata.engine.tokenizer import Tokenizer

    folder = _folder()
    tokenizer = Tokenizer.from_folder(folder)
    peer = GenerateOneAtATime(folder, "float32")
    runs = []
    for conc in args.concurrency:
        batch = prompts(tokenizer, max(4, conc * args.requests_per_client))
        runs.append(hf_run(peer, batch, conc, args.max_tokens))
    return runs


def write_report(args: argparse.Namespace, runs: list[Run]) -> None:
    command = "python -m strata.bench.concurrency " + " ".join(sys.argv[1:])
    meta = {
        "command": command.strip(),
        "model": "SmolLM2-135M-Instruct (bundled GGUF Q4_1, dequantized to fp32)",
        "dtype": "float32",  # both systems
        "threads": args.threads,
        "max_tokens": args.max_tokens,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "engine-concurrency.json").write_text(
        json.dumps({"meta": meta, "runs": [asdict(r) for r in runs]}, indent=2)
    )
    (args.out / "engine-concurrency.md").write_text(markdown(meta, runs))


def markdown(meta: dict[str, object], runs: list[Run]) -> str:
    lines = [
        "# Engine benchmark: strata vs transformers `generate`",
        "",
        f"Command: `{meta['command']}` ({meta['date']}, torch {meta['torch']}, "
        f"{meta['threads']} threads). Model: {meta['model']}. Greedy, {meta['max_tokens']} "
        "output tokens per request, chat prompts, closed-loop clients; TTFT measured from "
        "the moment a request is sent (so it includes queueing).",
        "",
        "| concurrency | system | requests | output tok/s | TTFT p50 ms | TTFT p95 ms "
        "| E2E p50 s | E2E p95 s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r.concurrency} | {r.system} | {r.requests} | {r.tok_per_s} | {r.ttft_p50_ms} | "
            f"{r.ttft_p95_ms} | {r.e2e_p50_s} | {r.e2e_p95_s} |"
        )
    lines += ["", "Throughput ratio (strata / generate) at equal concurrency:", ""]
    for strata, hf in zip(runs[::2], runs[1::2], strict=True):  # SYSTEMS order per concurrency
        lines.append(f"- concurrency {strata.concurrency}: {strata.tok_per_s / hf.tok_per_s:.1f}x")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
