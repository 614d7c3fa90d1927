"""`strata bench failover`: the run, then JSON and a Markdown table in docs/benchmarks/."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strata.bench.failover.cluster import cluster
from strata.bench.failover.run import FailoverResult, Plan, run

KINDS = ("ok", "failed_before_content", "error_event_after_content", "broken_stream")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="strata bench failover", description=__doc__)
    parser.add_argument("--model", type=Path, help="engine model (default: the bundled one)")
    parser.add_argument("--clients", type=int, default=Plan.clients)
    parser.add_argument("--duration-s", type=float, default=Plan.duration_s)
    parser.add_argument("--kill-at-s", type=float, default=Plan.kill_at_s)
    parser.add_argument("--max-tokens", type=int, default=Plan.max_tokens)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    plan = Plan(args.clients, args.duration_s, args.kill_at_s, args.max_tokens)
    with (
        tempfile.TemporaryDirectory(prefix="strata-failover-") as tmp,
        cluster(args.model, Path(tmp)) as running,
    ):
        result = asyncio.run(run(running, plan))
    command = "strata bench failover " + " ".join(argv if argv is not None else sys.argv[1:])
    write(result, command.strip(), args.out)


def summary(result: FailoverResult) -> dict[str, Any]:
    return {
        "requests": len(result.outcomes),
        "outcomes": {
            "streamed": {k: result.count(k, stream=True) for k in KINDS},
            "not_streamed": {k: result.count(k, stream=False) for k in KINDS},
        },
        "out_of_rotation_s": result.out_of_rotation_s,
        "first_fallback_content_s": result.first_fallback_content_s,
        "latency_ms": {
            f"{'stream' if s else 'plain'}_{'after' if a else 'before'}_kill_p{q}": (
                result.latency_ms(a, s, q)
            )
            for s in (False, True)
            for a in (False, True)
            for q in (50, 99)
        },
    }


def write(result: FailoverResult, command: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}",
        "plan": asdict(result.plan),
        **summary(result),
    }
    (out / "failover.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "failover.md").write_text(markdown(data))


def markdown(data: dict[str, Any]) -> str:
    plan, out = data["plan"], data["outcomes"]
    plain, streamed, lat = out["not_streamed"], out["streamed"], data["latency_ms"]
    rows = [f"| {k} | {plain[k]} | {streamed[k]} |" for k in KINDS]
    lost = plain["failed_before_content"] + streamed["failed_before_content"]
    before = _pair(lat, "plain_before_kill"), _pair(lat, "stream_before_kill")
    after = _pair(lat, "plain_after_kill"), _pair(lat, "stream_after_kill")
    lines = [
        "# Spot failover under load",
        "",
        f"Command: `{data['command']}` ({data['when']}; {data['machine']}).",
        "",
        "Two strata engine servers serve one model behind strata's gateway: `spot` (tier",
        "spot, tried first) and `on-demand` (its fallback). "
        f"{plan['clients']} closed-loop clients (half streaming, {plan['max_tokens']} tokens",
        f"each) run for {plan['duration_s']:.0f} s; at {plan['kill_at_s']:.0f} s the spot "
        "server is killed with SIGKILL, without notice.",
        "",
        "| outcome | not streamed | streamed |",
        "|---|--:|--:|",
        *rows,
        "",
        f"- Requests that failed before any byte reached their client: **{lost}** (target 0:",
        "  they are retried on the fallback).",
        f"- Streams cut after content: {streamed['error_event_after_content']} ended with a "
        f"clean OpenAI error event, **{streamed['broken_stream']}** broke without one "
        "(target 0).",
        f"- Spot out of rotation (kill → the gateway reports it unavailable): "
        f"**{_s(data['out_of_rotation_s'])}**.",
        "- New traffic served again (kill → first text of a stream started after it, from the",
        f"  fallback): **{_s(data['first_fallback_content_s'])}**. Target: failover ≤ 1 s on "
        "loopback (the seed's rule: 90 s).",
        f"- Latency p50 / p99, not streamed: {before[0]} before the kill, {after[0]} after; "
        f"streamed: {before[1]} before, {after[1]} after (afterwards the fallback carries all",
        "  the load).",
    ]
    return "\n".join(lines) + "\n"


def _pair(latency: dict[str, float | None], prefix: str) -> str:
    return f"{_ms(latency[prefix + '_p50'])} / {_ms(latency[prefix + '_p99'])}"


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def _s(value: float | None) -> str:
    return "not seen" if value is None else f"{value * 1000:.0f} ms"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"
