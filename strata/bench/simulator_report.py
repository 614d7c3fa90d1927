"""The Markdown page `strata bench simulator` writes: the setup, one row per load level with
the real runs and the prediction, the verdict, and what `strata plan batching` recommends."""

from __future__ import annotations

from typing import Any

TARGET_ERROR = 0.10  # the bar for p95 (Vidur reports < 9%)


def markdown(report: dict[str, Any]) -> str:
    e = report["engine"]
    lines = [
        "# Simulator validation: `strata plan batching` against the real engine",
        "",
        f"Command: `{report['command']}` ({report['date']}; {report['machine']}; load average "
        f"{report['load_average_end']} at the end).",
        f"Engine: in-process, streaming, {e['dtype']}, {e['threads']} threads, max_num_seqs "
        f"{e['max_num_seqs']}, max_num_batched_tokens {e['max_num_batched_tokens']}, "
        f"batch_window_ms {e['batch_window_ms']:g}.",
        f"Workload: prompts {report['workload']['prompt_len']} tokens, outputs "
        f"{report['workload']['output_len']} tokens, Poisson arrivals, "
        f"{report['requests_per_run']} requests per run, {report['repeats']} real runs per level.",
        f"Step-time profile: {e['profile_steps']} steps, median |measured / predicted - 1| "
        f"{e['profile_median_error']:.1%}; seconds = "
        + " + ".join(f"{v:.3g} x {k}" for k, v in e["step_time"].items()) + ".",
        f"Saturation (closed loop of {e['max_num_seqs']} clients): "
        f"**{report['saturation_rate']:.3f} req/s**.",
        "",
        "Each cell: the median of the real runs (each run's value in brackets) / the "
        "prediction. Error: predicted / real - 1. *Step time vs profile*: each real run's median "
        "measured / profiled step time (1.00: the machine ran as fast as when profiled). "
        "*Drift removed*, a diagnostic only: the median over runs of each run's p95 errors "
        "when its simulation runs at the speed it measured, i.e. the simulator's error once "
        "the machine's drift is taken out.",
        "",
        "| load | req/s | TTFT p50 ms | TTFT p95 ms | error | E2E p50 s | E2E p95 s | error "
        "| out tok/s | step time vs profile | drift removed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    lines += [_level_row(row) for row in report["levels"]]
    lines += ["", verdict(report["levels"]), ""]
    plan = report["plan"]
    lines += ["## What `strata plan batching` recommends here", "", f"`{plan['command']}`:", ""]
    lines += ["```", *plan["lines"], "```", ""]
    return "\n".join(lines)


def _level_row(row: dict[str, Any]) -> str:
    def pair(name: str, scale: float = 1.0, digits: int = 0) -> str:
        m = row[name]
        runs = ", ".join(f"{v / scale:.{digits}f}" for v in m["real"])
        return (
            f"{m['real_median'] / scale:.{digits}f} ({runs}) / {m['predicted'] / scale:.{digits}f}"
        )

    speeds = ", ".join(f"{v:.2f}" for v in row["speed_vs_profile"])
    rescaled = row["rescaled_errors"]
    return (
        f"| {row['load']:.0%} | {row['rate']:.3f} | {pair('ttft_p50_ms')} | {pair('ttft_p95_ms')} "
        f"| {row['ttft_p95_ms']['error']:+.1%} | {pair('e2e_p50_ms', 1000, 2)} "
        f"| {pair('e2e_p95_ms', 1000, 2)} | {row['e2e_p95_ms']['error']:+.1%} "
        f"| {pair('output_tok_s', 1, 1)} | {speeds} "
        f"| {rescaled['ttft_p95_ms']:+.1%}, {rescaled['e2e_p95_ms']:+.1%} |"
    )


def verdict(rows: list[dict[str, Any]]) -> str:
    """The worst p95 error of the prediction, and what the two variants in the JSON give."""
    p95s = ("ttft_p95_ms", "e2e_p95_ms")
    worst = max(abs(row[m]["error"]) for row in rows for m in p95s)
    drift = max(abs(row["rescaled_errors"][m]) for row in rows for m in p95s)
    jitter = max(abs(row["jittered"][m]["error"]) for row in rows for m in p95s)
    held = "within" if worst <= TARGET_ERROR else "outside"
    return (
        f"Largest p95 prediction error (TTFT and E2E, every level): **{worst:.1%}**, {held} the "
        f"{TARGET_ERROR:.0%} target (Vidur reports < 9%). With each run's drift removed: "
        f"{drift:.1%}. With the profile's step-time jitter drawn independently for every "
        f"simulated step (the median of several seeds; `jittered` in the JSON): "
        f"{jitter:.1%}."
    )
