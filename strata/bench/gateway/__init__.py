"""`strata bench gateway`: strata's gateway next to the LiteLLM proxy, in one run.

Both gateways sit in front of the same near-instant mock upstream (nginx returning canned
chat completions) on loopback. Each gateway is pinned to one core; `wrk` and the mock share the
other, so the gateway's own cost is what the numbers show. Three systems are measured: the mock
called directly (the baseline), LiteLLM and strata, each non-streaming and streaming at a few
connection counts.

Modules: `mock` (the nginx upstream), `wrk` (the load generator and its results), `cpu`
(per-core and per-process CPU from /proc), `process` (pinned child processes), `systems` (the
three systems as context managers), `run` (the measurement loop), `report` (JSON and
Markdown), `main` (the command line).
"""

from __future__ import annotations


class GatewayBenchError(RuntimeError):
    """Anything that stops the benchmark: a missing tool, a process that would not start, a
    system that answered a probe wrongly. The message says what to do about it."""
