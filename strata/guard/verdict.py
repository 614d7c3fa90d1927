"""What the guard decided: typed findings and verdicts, and the error a block raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from strata.errors import ContentPolicyError
from strata.guard.policy import Action

Detector = Literal["injection", "secrets", "pii", "canary", "hidden_characters"]


@dataclass(frozen=True)
class Finding:
    """One thing one detector found in one field. Offsets are into the field's forwarded text
    (-1 where the finding has no span, e.g. an injection score)."""

    detector: Detector
    kind: str  # injection category, or the secret/PII kind ("openai_key", "email", …)
    path: str
    action: Action
    score: float = 1.0
    start: int = -1
    end: int = -1


@dataclass(frozen=True)
class GuardVerdict:
    """The guard's decision on one request's texts (or one document).

    `texts` is what to forward: the same (path, text) pairs, hidden characters stripped and
    spans redacted where the policy says so. `blocked` means refuse: `raise_if_blocked` raises
    the `ContentPolicyError` naming the field."""

    score: float  # highest injection probability over the scanned fields, 0..1
    categories: tuple[str, ...]  # injection categories of flagged fields
    findings: tuple[Finding, ...]
    texts: tuple[tuple[str, str], ...]
    blocked_by: Finding | None = None
    changed: bool = False  # whether any forwarded text differs from what was sent

    @property
    def blocked(self) -> bool:
        return self.blocked_by is not None

    @property
    def flagged(self) -> bool:
        return bool(self.findings)

    def raise_if_blocked(self) -> None:
        """Raise `ContentPolicyError` (400, code `content_policy`, param = field) if blocked."""
        finding = self.blocked_by
        if finding is None:
            return
        raise ContentPolicyError(
            f"{finding.path} was refused by the content policy ({_describe(finding)}). "
            "Change the text and send the request again.",
            param=finding.path,
        )


def _describe(finding: Finding) -> str:
    if finding.detector == "injection":
        return f"likely prompt injection: {finding.kind}, score {finding.score:.2f}"
    return f"{finding.detector}: {finding.kind}"
