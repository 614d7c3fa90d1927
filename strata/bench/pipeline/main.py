"""`strata bench pipeline`: the run, then JSON and Markdown in docs/benchmarks/."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

from strata.bench.pipeline.primary import databases
from strata.bench.pipeline.report import Data, markdown, summary
from strata.bench.pipeline.run import PipelineResult, Plan, run
from strata.pipeline.embedder import MiniLMEmbedder

DEFAULTS = Plan()


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    plan = Plan(
        documents=args.documents,
        rates=tuple(args.rates),
        seconds_per_rate=args.seconds_per_rate,
        seed=args.seed,
    )
    embedder = MiniLMEmbedder()
    with databases() as running:
        result = run(plan, running, embedder, say=_say)
    command = "strata bench pipeline " + " ".join(argv if argv is not None else sys.argv[1:])
    write(result, command.strip(), args.out)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="strata bench pipeline", description=__doc__)
    parser.add_argument("--documents", type=int, default=DEFAULTS.documents)
    parser.add_argument("--rates", type=float, nargs="+", default=list(DEFAULTS.rates))
    parser.add_argument("--seconds-per-rate", type=float, default=DEFAULTS.seconds_per_rate)
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    return parser.parse_args(argv)


def write(result: PipelineResult, command: str, out: Path) -> Data:
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}",
        **summary(result),
    }
    (out / "pipeline.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "pipeline.md").write_text(markdown(data))
    return data


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
