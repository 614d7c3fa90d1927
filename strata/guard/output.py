"""The response-side filter: secrets, personal data and the canary, on a stream.

One `OutputFilter` per response. `feed(chunk)` returns the text that is safe to send now (a
short tail is held back so a secret split across chunks is caught whole); `finish()` returns the
rest. Under `redact` a span is replaced; under `block` (the canary's default) the stream is cut
just before the span, `blocked` turns true and every later call returns "" — the gateway then
ends the stream with a `content_policy` error and counts it. `flag` passes and records.
"""

from __future__ import annotations

import secrets

from strata.guard.canary import Canary
from strata.guard.pii import DETECTORS, Detector, Span, StreamRedactor, marker
from strata.guard.policy import Action, GuardPolicy
from strata.guard.verdict import Detector as Detector_
from strata.guard.verdict import Finding


class OutputFilter:
    """Stateful, one per stream; not thread-safe."""

    def __init__(self, policy: GuardPolicy, canary: Canary | None = None):
        self._policy = policy
        self._cut = f"\x00cut-{secrets.token_hex(8)}\x00"  # cannot occur in model output
        detectors = DETECTORS
        if canary is not None and policy.canary != "off":
            detectors = (Detector("canary", "canary", canary.pattern()), *DETECTORS)
        self._redactor = StreamRedactor(self._acts_on, self._replace, detectors=detectors)
        self.blocked = False

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Every span found so far, with offsets into the unfiltered output."""
        return tuple(
            Finding(_detector(s), s.kind, "output", self._action(s), 1.0, s.start, s.end)
            for s in self._redactor.spans
            if self._action(s) != "off"
        )

    def feed(self, chunk: str) -> str:
        """Add a chunk of model output; return what may be sent now."""
        return "" if self.blocked else self._stop_at_cut(self._redactor.feed(chunk))

    def finish(self) -> str:
        """End of the stream: return what was held back."""
        return "" if self.blocked else self._stop_at_cut(self._redactor.finish())

    def _action(self, span: Span) -> Action:
        if span.group == "canary":
            return self._policy.canary
        return self._policy.secrets if span.group == "secret" else self._policy.pii

    def _acts_on(self, span: Span) -> bool:
        return self._action(span) in ("redact", "block")

    def _replace(self, span: Span) -> str:
        return self._cut if self._action(span) == "block" else marker(span)

    def _stop_at_cut(self, text: str) -> str:
        head, cut, _ = text.partition(self._cut)
        self.blocked = bool(cut)
        return head


_DETECTOR: dict[str, Detector_] = {"secret": "secrets", "pii": "pii", "canary": "canary"}


def _detector(span: Span) -> Detector_:
    return _DETECTOR[span.group]
