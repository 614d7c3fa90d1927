"""`strata bench routing`: prefix-aware routing against round-robin (and least-loaded) on two
engine servers, written to docs/benchmarks/routing.json and routing.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strata.bench.routing.cluster import TOKEN, EngineConfig, engines
from strata.bench.routing.report import markdown, per_run, summary
from strata.bench.routing.run import POLICIES, Backends, Policy, PolicyRun, run_policy
from strata.bench.routing.workload import Shape, workload
from strata.config import RoutingSettings
from strata.engine.loader import resolve_model_folder
from strata.gateway.upstream.prompt_blocks import load_hashers

# --smoke: a minute on 2 cores, to prove the harness works; its numbers mean little.
SMOKE = Shape(contexts=2, context_words=120, conversations=4, turns=2, rate=4.0, think_s=0.2,
              question_words=8, max_tokens=4)  # fmt: skip
SMOKE_ENGINE = {"kv_cache_memory": "16MiB", "max_model_len": 512}
# One short request per engine before the measured runs: the first forward passes are slow.
WARM_UP = Shape(contexts=1, context_words=20, conversations=2, turns=1, rate=100.0, think_s=0.0,
                question_words=4, max_tokens=2)  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        shape = _shape(args)
        policies = _policies(args.policies)
    except ValueError as exc:
        parser.error(str(exc))
    folder = resolve_model_folder(args.model, args.model_cache)
    config = _engine_config(args, folder)
    routing = RoutingSettings(prefix_overload_margin=args.overload_margin)
    with tempfile.TemporaryDirectory(prefix="strata-routing-") as tmp:
        token_file = Path(tmp) / "engine.token"
        token_file.write_text(TOKEN)
        hasher = load_hashers([str(folder)], args.model_cache)[str(folder)]
        with engines(config, Path(tmp)) as urls:
            backends = Backends(urls, token_file, folder, hasher)
            runs = asyncio.run(_run_all(backends, shape, policies, args.repeats, routing))
    command = "strata bench routing " + " ".join(argv if argv is not None else sys.argv[1:])
    write(runs, _context(command.strip(), shape, config, args), args.out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="strata bench routing", description=__doc__)
    parser.add_argument("--model", help="engine model folder or .gguf (default: the bundled one)")
    parser.add_argument("--model-cache", type=Path, default=Path(".strata/models"))
    for f in fields(Shape):
        smoke = getattr(SMOKE, f.name)
        option = f"--{f.name.replace('_', '-')}"
        parser.add_argument(option, type=type(f.default), default=None,
                            help=f"default {f.default} ({smoke} with --smoke)")  # fmt: skip
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--repeats", type=int, default=1, choices=range(1, 11), metavar="1..10")
    parser.add_argument("--overload-margin", type=int, default=4)
    parser.add_argument("--kv-cache-memory", help="per engine (default 64MiB; 16MiB --smoke)")
    parser.add_argument("--max-model-len", type=int, help="default 2048 (512 with --smoke)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per engine")
    parser.add_argument("--smoke", action="store_true", help="a tiny run to check the harness")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    return parser


def _shape(args: argparse.Namespace) -> Shape:
    given = {f.name: getattr(args, f.name) for f in fields(Shape)}
    return replace(
        SMOKE if args.smoke else Shape(), **{k: v for k, v in given.items() if v is not None}
    )


def _policies(text: str) -> list[Policy]:
    names = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in names if p not in POLICIES]
    if unknown or not names:
        raise ValueError(
            f"--policies: {unknown or 'none given'}; choose from {', '.join(POLICIES)}"
        )
    return [p for p in POLICIES if p in names]


def _engine_config(args: argparse.Namespace, folder: Path) -> EngineConfig:
    base = {**asdict(EngineConfig(folder)), **(SMOKE_ENGINE if args.smoke else {})}
    given = {"kv_cache_memory": args.kv_cache_memory, "max_model_len": args.max_model_len,
             "threads": args.threads}  # fmt: skip
    return EngineConfig(**{**base, **{k: v for k, v in given.items() if v is not None}})


async def _run_all(
    backends: Backends, shape: Shape, policies: Sequence[Policy], repeats: int,
    routing: RoutingSettings,
) -> list[PolicyRun]:  # fmt: skip
    """Each repeat runs every policy, the order rotating, each with its own prompts."""
    await run_policy(backends, "round-robin", workload(WARM_UP, "warm-up"), "warm-up", routing)
    runs = []
    for r in range(repeats):
        for policy in [*policies[r % len(policies) :], *policies[: r % len(policies)]]:
            salt = f"{policy}-{r}"
            print(f"routing bench: {policy} (repeat {r + 1}/{repeats})", file=sys.stderr)
            runs.append(await run_policy(backends, policy, workload(shape, salt), salt, routing))
    return runs


def _context(
    command: str, shape: Shape, config: EngineConfig, args: argparse.Namespace
) -> dict[str, Any]:
    return {
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}",
        "smoke": args.smoke,
        "repeats": args.repeats,
        "shape": asdict(shape),
        "engines": {
            "count": 2,
            "model": args.model or "bundled SmolLM2-135M-Instruct",
            "kv_cache_memory": config.kv_cache_memory,
            "max_model_len": config.max_model_len,
            "threads": config.threads,
        },
        "overload_margin": args.overload_margin,
    }


def write(runs: Sequence[PolicyRun], context: dict[str, Any], out: Path) -> None:
    by_policy: dict[str, list[PolicyRun]] = {}
    for run in runs:
        by_policy.setdefault(run.policy, []).append(run)
    data = {
        **context,
        "policies": {name: summary(group) for name, group in by_policy.items()},
        "runs": [per_run(run) for run in runs],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "routing.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "routing.md").write_text(markdown(data))
