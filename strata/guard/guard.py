"""The guard: one call per request, one filter per response stream, one scan per document.

    check_input:   sanitize (sizes, hidden characters) → injection score per untrusted field
                   → secrets and PII per field → policy → GuardVerdict
    output_filter: secrets, PII and the canary on a stream, chunk by chunk
    scan_document: the injection detector on a chunk bound for the RAG index (indirect injection)

A pure function of text and policy: it knows nothing about HTTP, tenants or the ledger; the
gateway records verdicts and turns `ContentPolicyError` into a 400.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from strata.guard.canary import Canary
from strata.guard.classifier import InjectionModel, default_model
from strata.guard.heuristics import match_shapes
from strata.guard.output import OutputFilter
from strata.guard.pii import Span, redact, scan
from strata.guard.policy import Action, GuardPolicy
from strata.guard.sanitize import SanitizeReport, normalize, sanitize, strip_hidden
from strata.guard.verdict import Detector, Finding, GuardVerdict

HEURISTIC_SCORE = 1.0  # a known attack shape counts as certain


class Guard:
    """Holds the injection model and the deployment's canary; stateless per call, thread-safe."""

    def __init__(self, model: InjectionModel | None = None, canary: Canary | None = None):
        self.model = model or default_model()
        self.canary = canary

    def warm_up(self) -> None:
        """Load everything scoring needs (see `InjectionModel.warm_up`); call before serving."""
        self.model.warm_up()

    def injection_score(self, normalized: str) -> tuple[float, tuple[str, ...]]:
        """(probability, attack-shape categories) for the detectors' copy of one text."""
        shapes = match_shapes(normalized.lower())
        score = self.model.score(normalized)
        return (max(score, HEURISTIC_SCORE) if shapes else score), shapes

    def check_input(
        self,
        texts: Sequence[tuple[str, str]],
        policy: GuardPolicy,
        *,
        trusted: Collection[str] = (),
    ) -> GuardVerdict:
        """Judge a request's (field path, text) pairs under `policy`.

        Raises `InvalidRequestError` (hidden characters under `refuse`) or
        `PayloadTooLargeError` (size limits) at once; any other block is in the verdict
        (`raise_if_blocked`). `trusted` paths (system/developer messages written by the
        deployment) are sanitized and scanned for secrets but not scored for injection."""
        report = sanitize(texts, policy.hidden_characters, policy.limits)
        findings = _hidden_findings(report)
        forwarded: list[tuple[str, str]] = []
        score = 0.0
        for field in report.texts:
            if field.path not in trusted and policy.injection != "off":
                field_score, found = self._injection(field.path, field.normalized, policy)
                score = max(score, field_score)
                findings += found
            text, spans = _apply_spans(field.forwarded, policy)
            findings += [_span_finding(field.path, s, _span_action(s, policy)) for s in spans]
            forwarded.append((field.path, text))
        return _verdict(score, findings, forwarded, changed=forwarded != list(texts))

    def scan_document(self, text: str, policy: GuardPolicy | None = None) -> GuardVerdict:
        """Judge one chunk bound for the index. `blocked` means quarantine (policy `documents:
        block`); hidden characters are stripped and flagged rather than refused."""
        policy = policy or GuardPolicy()
        forwarded, removed = strip_hidden("document", text)
        findings = [
            Finding("hidden_characters", f"U+{c.codepoint:04X}", "document", "redact")
            for c in removed
        ]
        score, found = self._injection("document", normalize(text), policy, policy.documents)
        forwarded, spans = _apply_spans(forwarded, policy)
        findings += found + [_span_finding("document", s, _span_action(s, policy)) for s in spans]
        return _verdict(score, findings, [("document", forwarded)], changed=forwarded != text)

    def output_filter(self, policy: GuardPolicy) -> OutputFilter:
        """A fresh stateful filter for one response: `feed(chunk) -> str`, `finish() -> str`."""
        return OutputFilter(policy, self.canary)

    def _injection(
        self, path: str, normalized: str, policy: GuardPolicy, action: Action | None = None
    ) -> tuple[float, list[Finding]]:
        """(score, findings): one finding per attack category when the score passes."""
        action = action or policy.injection
        if action == "off":
            return 0.0, []
        score, shapes = self.injection_score(normalized)
        threshold = policy.injection_threshold or self.model.threshold
        if score <= threshold:
            return score, []
        kinds = shapes or ("injection",)
        return score, [Finding("injection", kind, path, action, score) for kind in kinds]


def _span_action(span: Span, policy: GuardPolicy) -> Action:
    return policy.secrets if span.group == "secret" else policy.pii


def _apply_spans(text: str, policy: GuardPolicy) -> tuple[str, list[Span]]:
    """The text with `redact`-policy spans replaced, and every span that is not `off`."""
    spans = [s for s in scan(text) if _span_action(s, policy) != "off"]
    return redact(text, [s for s in spans if _span_action(s, policy) == "redact"]), spans


def _span_finding(path: str, span: Span, action: Action) -> Finding:
    detector: Detector = "secrets" if span.group == "secret" else "pii"
    return Finding(detector, span.kind, path, action, 1.0, span.start, span.end)


def _hidden_findings(report: SanitizeReport) -> list[Finding]:
    return [
        Finding("hidden_characters", f"U+{c.codepoint:04X}", c.path, "redact")
        for c in report.changes
    ]


def _verdict(
    score: float, findings: list[Finding], texts: list[tuple[str, str]], changed: bool
) -> GuardVerdict:
    injections = [f for f in findings if f.detector == "injection"]
    blocking = [f for f in findings if f.action == "block"]
    return GuardVerdict(
        score=score,
        categories=tuple(dict.fromkeys(f.kind for f in injections)),
        findings=tuple(findings),
        texts=tuple(texts),
        blocked_by=blocking[0] if blocking else None,
        changed=changed,
    )
