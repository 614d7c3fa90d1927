"""The command line of `strata bench gateway`.

    strata bench gateway --systems direct,litellm,strata --concurrency 1 8 32 \\
        --duration-s 10 --chunks 20 --out docs/benchmarks

Needs `wrk`, `nginx` and `taskset` (Debian: `apt-get install -y wrk nginx`; taskset is in
util-linux) and two cores. LiteLLM is installed into `.bench/litellm-venv` on first use.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strata import __version__
from strata.bench.gateway import GatewayBenchError
from strata.bench.gateway.process import CLIENT_CORE, GATEWAY_CORE, require_tools
from strata.bench.gateway.report import build
from strata.bench.gateway.run import Plan, run
from strata.bench.gateway.systems import SYSTEMS


def systems_arg(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in SYSTEMS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"systems are a comma list of {', '.join(SYSTEMS)}")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="strata bench gateway", description=(__doc__ or "").splitlines()[0]
    )
    p.add_argument(
        "--systems",
        type=systems_arg,
        default=tuple(SYSTEMS),
        help="comma list: direct,litellm,strata (default: all)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[1, 8, 32],
        help="keep-alive connections per cell",
    )
    p.add_argument("--duration-s", type=float, default=10.0, help="measured seconds per cell")
    p.add_argument("--warmup-s", type=float, default=2.0, help="warm-up seconds per cell")
    p.add_argument("--chunks", type=int, default=20, help="content chunks per streamed answer")
    p.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    return p  # fmt: skip


def machine() -> dict[str, Any]:
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": _version(["wrk", "-v"]),
        "nginx": _version(["nginx", "-v"]).removeprefix("nginx version: "),
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(cmd: list[str]) -> str:
    """The first line a tool prints about itself (wrk and nginx print it on stderr)."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].split(" Copyright")[0].strip() if lines else "unknown"


def header() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "strata_version": __version__,
        "cores": {"client": CLIENT_CORE, "gateway": GATEWAY_CORE},
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    plan = Plan(
        tuple(args.systems), tuple(args.concurrency), args.duration_s, args.warmup_s, args.chunks
    )
    try:
        require_tools()
        with tempfile.TemporaryDirectory(prefix="strata-bench-gateway-") as tmp:
            result = run(plan, Path(tmp))
    except GatewayBenchError as e:
        print(f"strata bench gateway: {e}", file=sys.stderr)
        raise SystemExit(1) from e
    report = build(result, "strata bench gateway " + " ".join(argv), header())
    json_path, md_path = report.write(args.out)
    print(report.markdown)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
