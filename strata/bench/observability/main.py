"""`strata bench observability`: the runs, then JSON and Markdown in docs/benchmarks/."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strata.bench.observability.accuracy import AccuracyPlan, AccuracyResult, measure_accuracy
from strata.bench.observability.otlp_sink import OtlpSink
from strata.bench.observability.overhead import OverheadPlan, OverheadResult, measure_overhead
from strata.bench.observability.processes import gateway, model_folder, twin_server
from strata.bench.observability.report import accuracy_summary, markdown, overhead_summary
from strata.bench.workload import CHAT_PROMPT, parse_length
from strata.errors import ConfigError, StrataError

PARTS = ("accuracy", "overhead")
ACCURACY, OVERHEAD = AccuracyPlan(), OverheadPlan()
# A few seconds of load per part, for tests and a first look; not a measurement.
QUICK = {"rounds": 2, "concurrency": 4, "requests_per_run": 8, "output_tokens": 8,
         "accuracy_requests": 6, "accuracy_rate": 2.0, "warmup": 1}  # fmt: skip
EXIT_BAD_INPUT = 2


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    try:
        data = run(args)
    except StrataError as exc:
        print(f"strata bench observability: {exc.message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT) from None
    command = "strata bench observability " + " ".join(argv if argv is not None else sys.argv[1:])
    write({"command": command.strip(), **data}, args.out)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="strata bench observability", description=__doc__)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny runs (seconds), to check the command works; not a measurement",
    )
    parser.add_argument("--model", type=Path, help="engine model (default: the bundled one)")
    parser.add_argument("--threads", type=int, help="engine torch threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt-len", default="uniform:20:120")
    parser.add_argument("--output-tokens", type=int, default=OVERHEAD.output_tokens)
    parser.add_argument("--accuracy-requests", type=int, default=ACCURACY.requests)
    parser.add_argument("--accuracy-rate", type=float, default=ACCURACY.rate)
    parser.add_argument("--warmup", type=int, default=ACCURACY.warmup)
    parser.add_argument("--rounds", type=int, default=OVERHEAD.rounds)
    parser.add_argument("--concurrency", type=int, default=OVERHEAD.concurrency)
    parser.add_argument("--requests-per-run", type=int, default=OVERHEAD.requests)
    parser.add_argument(
        "--no-otel",
        dest="otel",
        action="store_false",
        help="leave out the OpenTelemetry arm of the overhead runs",
    )
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    if args.quick:
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)  # options given explicitly still win
    return args


def plans(args: argparse.Namespace) -> tuple[AccuracyPlan, OverheadPlan]:
    prompt_len = parse_length(args.prompt_len, CHAT_PROMPT)
    accuracy = AccuracyPlan(args.accuracy_requests, args.accuracy_rate, args.output_tokens,
                            prompt_len, args.warmup, args.seed)  # fmt: skip
    overhead = OverheadPlan(args.rounds, args.concurrency, args.requests_per_run,
                            args.output_tokens, prompt_len, args.otel, args.seed)  # fmt: skip
    return accuracy, overhead


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Each part against servers of its own, one part at a time (they share the cores)."""
    accuracy_plan, overhead_plan = plans(args)
    engine: dict[str, Any] = {}
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        engine["threads"] = args.threads
    folder = model_folder(args.model)
    engine["model"] = str(folder)
    data: dict[str, Any] = {"model": folder.name, "accuracy": None, "overhead": None}
    if "accuracy" in args.parts:
        data["accuracy"] = accuracy_summary(_accuracy(engine, accuracy_plan))
    if "overhead" in args.parts:
        no_prefix_cache = {**engine, "enable_prefix_caching": False}
        data["overhead"] = overhead_summary(_overhead(no_prefix_cache, overhead_plan))
    return data


def _accuracy(engine: dict[str, Any], plan: AccuracyPlan) -> AccuracyResult:
    _say("accuracy: starting a gateway with its built-in engine")
    with (
        tempfile.TemporaryDirectory(prefix="strata-observability-") as tmp,
        OtlpSink(keep_spans=True) as sink,
        gateway(engine, Path(tmp), sink.url) as running,
    ):
        _say(f"accuracy: {plan.requests} requests at {plan.rate:g}/s")
        return asyncio.run(measure_accuracy(running, sink, plan))


def _overhead(engine: dict[str, Any], plan: OverheadPlan) -> OverheadResult:
    _say("overhead: starting the twin engine server")
    with tempfile.TemporaryDirectory(prefix="strata-observability-") as tmp, OtlpSink() as sink:
        with twin_server(engine, Path(tmp), sink.url if plan.otel else None) as twin:
            result = asyncio.run(measure_overhead(twin, plan, _say))
        return replace(result, otel_exports=dict(sink.exports))  # the twin's last flush in


def write(data: dict[str, Any], out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "command": data["command"],
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}",
        **data,
    }
    (out / "observability.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    (out / "observability.md").write_text(markdown(data))
    _say(f"wrote {out / 'observability.json'} and {out / 'observability.md'}")
    return data


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
