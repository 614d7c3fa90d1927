"""`strata bench fairness`: does one tenant's flood hold back another tenant's first tokens?

For each engine scheduling policy (`fcfs`, then `fair`) a real `strata engine serve` process
(bundled SmolLM2, default dtype, a small batch cap so a queue forms) is loaded over HTTP with
streaming chat completions, each carrying `X-Strata-Fairness-Key` as the gateway sets it:

1. tenant A sends `--flood` requests at once;
2. once the engine has seen all of them (its `/metrics`: waiting + running + finished), tenant
   B sends `--few` requests.

Reported per policy and tenant: TTFT p50/p95 from the client's side, and how many of A's
requests got their first token before B's p95 one (B's position in the flood).

    strata bench fairness --out docs/benchmarks            # the full run, a few minutes
    strata bench fairness --smoke --out /tmp/fairness      # a few requests: proves the wiring
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from strata.bench.client import Target, http_client, send_request, with_model
from strata.bench.records import RequestRecord, percentile
from strata.bench.slo_bench import engine_server
from strata.bench.workload import Fixed, Uniform, Workload
from strata.fairness import KEY_HEADER

POLICIES = ("fcfs", "fair")
MODEL_CACHE = Path(".strata/models")


@dataclass(frozen=True)
class Plan:
    flood: int = 64  # tenant A's requests, sent at once
    few: int = 8  # tenant B's, sent once A's have queued
    max_num_seqs: int = 8  # the engine's batch cap (small, so that a queue forms)
    output_tokens: int = 32  # every answer, exactly (ignore_eos)
    prompt_tokens: int = 48  # about, per request (uniform ±50%)


SMOKE = Plan(flood=6, few=2, max_num_seqs=2, output_tokens=4, prompt_tokens=16)


@dataclass(frozen=True)
class TenantRun:
    records: list[RequestRecord]

    def ttfts_ms(self) -> list[float]:
        return [r.ttft * 1000 for r in self.records if r.ok and r.ttft is not None]

    def row(self) -> dict[str, Any]:
        ttfts = self.ttfts_ms()
        return {
            "requests": len(self.records),
            "ok": sum(r.ok for r in self.records),
            "ttft_p50_ms": round(percentile(ttfts, 50), 1) if ttfts else None,
            "ttft_p95_ms": round(percentile(ttfts, 95), 1) if ttfts else None,
        }


# -- one policy ----------------------------------------------------------------------------------


async def flood_and_few(target: Target, plan: Plan) -> tuple[TenantRun, TenantRun]:
    workload = Workload(Uniform(plan.prompt_tokens // 2, plan.prompt_tokens * 3 // 2),
                        Fixed(plan.output_tokens), seed=9)  # fmt: skip
    async with (
        tenant_client(target, "A", plan.flood) as a,
        tenant_client(target, "B", plan.few) as b,
    ):
        target = await with_model(a, target)
        await warm_up(target, workload)
        flood = [asyncio.create_task(send_request(a, target, workload.request(i)))
                 for i in range(plan.flood)]  # fmt: skip
        await arrived(a, target, plan.flood)
        few = [send_request(b, target, workload.request(10_000 + i)) for i in range(plan.few)]
        b_records = await asyncio.gather(*few)
        a_records = await asyncio.gather(*flood)
    return TenantRun(list(a_records)), TenantRun(list(b_records))


async def warm_up(target: Target, workload: Workload) -> None:
    """One request under no key first: a fresh engine's first steps are slow (kernel choice)."""
    async with http_client(target, 1) as http:
        record = await send_request(http, target, workload.request(99_999))
    if not record.ok:
        raise RuntimeError(f"the warm-up request failed: {record.error} {record.error_detail}")


def tenant_client(target: Target, tenant: str, connections: int) -> httpx.AsyncClient:
    http = http_client(target, connections)
    http.headers[KEY_HEADER] = tenant
    return http


async def arrived(http: httpx.AsyncClient, target: Target, count: int, timeout_s: float = 120.0
                  ) -> None:  # fmt: skip
    """Poll the engine's `/metrics` until `count` requests reached it (waiting, running or
    finished), so that B's requests arrive behind the whole flood."""
    metrics = target.base_url.rstrip("/").removesuffix("/v1") + "/metrics"
    deadline = time.monotonic() + timeout_s
    while seen_by_engine((await http.get(metrics)).text) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the engine did not see {count} requests within {timeout_s} s")
        await asyncio.sleep(0.02)


def seen_by_engine(scrape: str) -> float:
    """Requests waiting + running + finished, from an engine's Prometheus text."""
    names = {"strata:num_requests_waiting", "strata:num_requests_running",
             "strata:request_success_total"}  # fmt: skip
    samples = (line.rsplit(" ", 1) for line in scrape.splitlines() if not line.startswith("#"))
    return sum(float(value) for series, value in samples if series.split("{")[0] in names)


def a_before_b_p95(a: TenantRun, b: TenantRun) -> int | None:
    """How many of A's requests got their first token before B's p95 first token."""
    b_firsts = [r.first_token for r in b.records if r.ok and r.first_token is not None]
    if not b_firsts:
        return None
    b_p95 = percentile(b_firsts, 95)
    return sum(r.first_token is not None and r.first_token < b_p95 for r in a.records)


def measure(policy: str, plan: Plan, model: Path) -> dict[str, Any]:
    settings = {
        "STRATA_ENGINE__MODEL": str(model),
        "STRATA_ENGINE__SCHEDULING": policy,
        "STRATA_ENGINE__MAX_NUM_SEQS": str(plan.max_num_seqs),
        "STRATA_SLO__ENABLED": "false",
    }
    with (
        tempfile.TemporaryDirectory(prefix="strata-fairness-") as data,
        engine_server(settings, Path(data)) as target,
    ):
        a, b = asyncio.run(flood_and_few(replace(target, timeout_s=600.0), plan))
    return {"A": a.row(), "B": b.row(), "a_before_b_p95": a_before_b_p95(a, b)}


# -- the report ----------------------------------------------------------------------------------


def run(plan: Plan, command: str) -> dict[str, Any]:
    from strata.engine.loader import resolve_model_folder  # torch: only when asked

    model = resolve_model_folder(None, MODEL_CACHE)
    policies = {}
    for policy in POLICIES:
        policies[policy] = measure(policy, plan, model)
        print(f"{policy}: {json.dumps(policies[policy])}", file=sys.stderr, flush=True)
    return {
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}",
        "plan": asdict(plan),
        "policies": policies,
    }


def markdown(report: dict[str, Any]) -> str:
    plan = report["plan"]
    lines = [
        "# Tenant fairness: one tenant floods, another's first tokens",
        "",
        f"Command: `{report['command']}` ({report['when']}, {report['machine']}).",
        "",
        f"A real `strata engine serve` (bundled SmolLM2, batch cap {plan['max_num_seqs']}) per "
        f"policy, warmed up by one request. Tenant A sends {plan['flood']} streaming chat "
        f"requests at once; once the engine has seen them all, tenant B sends {plan['few']}. "
        f"Every answer is {plan['output_tokens']} tokens; prompts about "
        f"{plan['prompt_tokens']}. TTFT is the client's.",
        "",
        *(_SMOKE_NOTE if plan == asdict(SMOKE) else []),
        "| policy | tenant | requests | ok | TTFT p50 ms | TTFT p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for policy, result in report["policies"].items():
        for tenant in ("A", "B"):
            row = result[tenant]
            lines.append(f"| {policy} | {tenant} | {row['requests']} | {row['ok']} | "
                         f"{row['ttft_p50_ms']} | {row['ttft_p95_ms']} |")  # fmt: skip
    lines += ["", "A's requests that got their first token before B's p95 first token:", ""]
    lines += [f"- {p}: {r['a_before_b_p95']} of {plan['flood']}"
              for p, r in report["policies"].items()]  # fmt: skip
    return "\n".join(lines) + "\n"


_SMOKE_NOTE = ["**Smoke run** (`--smoke`): it proves the wiring; its numbers mean nothing.", ""]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="strata bench fairness", description=__doc__)
    parser.add_argument("--flood", type=int, default=Plan.flood)
    parser.add_argument("--few", type=int, default=Plan.few)
    parser.add_argument("--max-num-seqs", type=int, default=Plan.max_num_seqs)
    parser.add_argument("--output-tokens", type=int, default=Plan.output_tokens)
    parser.add_argument("--prompt-tokens", type=int, default=Plan.prompt_tokens)
    parser.add_argument("--smoke", action="store_true", help="a few requests (overrides sizes)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)
    plan = SMOKE if args.smoke else _plan(args, parser)
    report = run(plan, " ".join(["strata bench fairness", *argv]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fairness.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "fairness.md").write_text(markdown(report))
    print((args.out / "fairness.md").read_text())


def _plan(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Plan:
    plan = Plan(args.flood, args.few, args.max_num_seqs, args.output_tokens, args.prompt_tokens)
    if min(plan.flood, plan.few, plan.max_num_seqs, plan.output_tokens) < 1:
        parser.error("--flood, --few, --max-num-seqs and --output-tokens must be at least 1")
    if plan.prompt_tokens < 2:
        parser.error("--prompt-tokens must be at least 2")
    if plan.flood <= plan.max_num_seqs:
        parser.error("--flood must exceed --max-num-seqs, or no queue forms")
    return plan


def _cores() -> int:
    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
