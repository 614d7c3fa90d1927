"""`wrk` as the load generator: a Lua script per endpoint, one run per cell, typed results.

The script makes every request a POST with a JSON body and, when given, a bearer key. Its
`done()` hook prints one line, `STRATA_WRK {json}`, with the counts and the latency percentiles
(wrk measures in microseconds; the results here are in milliseconds). wrk's latency is the time
to the whole response, so for a stream it is the time to `data: [DONE]`.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from strata.bench.gateway import GatewayBenchError
from strata.bench.gateway.process import CLIENT_CORE, pinned

MARKER = "STRATA_WRK "
TIMEOUT_S = 30  # wrk's per-request timeout; a slower answer counts as an error

DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'STRATA_WRK {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"mean_us":%.1f,"max_us":%d,"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class Errors:
    connect: int
    read: int
    write: int
    timeout: int
    status: int  # responses with a status of 400 or more (wrk's "Non-2xx or 3xx responses")

    @property
    def total(self) -> int:
        return self.connect + self.read + self.write + self.timeout + self.status


@dataclass(frozen=True)
class WrkResult:
    """One wrk run. Latencies in milliseconds, over every response (errors included)."""

    requests: int
    duration_s: float
    bytes: int
    errors: Errors
    mean_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def lua_quote(text: str) -> str:
    """`text` as a Lua long string; the bracket level is chosen so the text cannot close it."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def lua_script(body: str, api_key: str | None) -> str:
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {lua_quote(body)}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    if api_key:
        lines.append(f'wrk.headers["Authorization"] = {lua_quote("Bearer " + api_key)}')
    return "\n".join(lines) + "\n" + DONE_HOOK


def parse_wrk(output: str) -> WrkResult:
    """The result from wrk's stdout; GatewayBenchError when the done() line is missing."""
    line = next((ln for ln in output.splitlines() if ln.startswith(MARKER)), None)
    if line is None:
        raise GatewayBenchError(f"wrk printed no {MARKER.strip()} line:\n{output[-2000:]}")
    raw = json.loads(line[len(MARKER) :])
    errors = Errors(raw["connect"], raw["read"], raw["write"], raw["timeout"], raw["status"])
    ms = {key: raw[f"{key}_us"] / 1000 for key in ("mean", "max", "p50", "p90", "p95", "p99")}
    return WrkResult(
        requests=raw["requests"], duration_s=raw["duration_us"] / 1e6, bytes=raw["bytes"],
        errors=errors, mean_ms=ms["mean"], max_ms=ms["max"], p50_ms=ms["p50"],
        p90_ms=ms["p90"], p95_ms=ms["p95"], p99_ms=ms["p99"],
    )  # fmt: skip


def wrk_command(url: str, script: Path, connections: int, duration_s: float) -> list[str]:
    """One thread (the client has one core), `connections` keep-alive connections."""
    return [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
        f"--timeout={TIMEOUT_S}s", "--latency", "-s", str(script), url,
    ]  # fmt: skip


def run_wrk(url: str, script: Path, connections: int, duration_s: float) -> WrkResult:
    """Load `url` for `duration_s` with `connections` connections, pinned to the client core."""
    cmd = pinned(CLIENT_CORE, wrk_command(url, script, connections, duration_s))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    if done.returncode != 0:
        raise GatewayBenchError(f"wrk exited with {done.returncode}: {done.stderr[-2000:]}")
    return parse_wrk(done.stdout)
