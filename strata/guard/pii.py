"""Secrets and personal data: find them, redact them, and do it safely on a stream.

Detectors are regular expressions with a validator each: provider key formats (OpenAI and
Anthropic `sk-`, AWS `AKIA`/`ASIA`, GitHub `ghp_`…, Slack `xox?-`, Google `AIza`, Stripe,
JWTs, PEM private keys), long high-entropy strings, credit card numbers (Luhn-checked), e-mail
addresses, phone numbers and IBANs (mod-97-checked). A `Finding` is a span; callers decide what
to do with it by policy. `StreamRedactor` redacts model output chunk by chunk, holding back a
short tail so that a secret split across chunks is still caught whole.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

Group = Literal["secret", "pii", "canary"]


@dataclass(frozen=True)
class Span:
    """One detected secret or personal datum in a text, by character offsets."""

    kind: str  # e.g. "openai_key", "credit_card", "email"
    group: Group
    start: int
    end: int


def _always(_: str) -> bool:
    return True


def luhn_valid(number: str) -> bool:
    """The Luhn checksum over the digits of `number` (separators ignored), 13–19 digits."""
    digits = [int(c) for c in number if c.isdigit()]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        total += d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2)
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616 mod-97 check (spaces ignored)."""
    compact = iban.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rotated = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rotated)) % 97 == 1


def shannon_bits(text: str) -> float:
    """Shannon entropy of the character distribution, in bits per character."""
    counts = Counter(text)
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def looks_random(token: str) -> bool:
    """A credential-like token: long, mixed letters and digits, both cases, high entropy
    (above what hex digests reach, so commit hashes and UUIDs pass)."""
    classes = (
        any(c.isdigit() for c in token),
        any(c.islower() for c in token),
        any(c.isupper() for c in token),
    )
    return all(classes) and shannon_bits(token) >= 4.3


_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_DATE = re.compile(r"\d{4}[\-./]\d{1,2}[\-./]\d{1,2}|\d{1,2}[\-./]\d{1,2}[\-./]\d{2,4}")


def phone_valid(text: str) -> bool:
    """8–15 digits with a `+` or `(` prefix, 10–15 without; dates are not phones."""
    digits = sum(c.isdigit() for c in text)
    low = 8 if text.startswith(("+", "(")) else 10
    if _DATE.fullmatch(text) or _IPV4.fullmatch(text):
        return False
    return low <= digits <= 15


@dataclass(frozen=True)
class Detector:
    kind: str
    group: Group
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] = _always


def _d(kind: str, group: Group, pattern: str, valid: Callable[[str], bool] = _always) -> Detector:
    return Detector(kind, group, re.compile(pattern), valid)


# Order matters: on overlap the earlier detector wins (provider formats before entropy).
DETECTORS: tuple[Detector, ...] = (
    _d("private_key", "secret", r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"),  # noqa: E501
    _d("anthropic_key", "secret", r"\bsk-ant-[A-Za-z0-9_\-]{20,}"),
    _d("openai_key", "secret", r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"),
    _d("aws_access_key", "secret", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    _d("github_token", "secret", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    _d("slack_token", "secret", r"\bxox[abposr]-[A-Za-z0-9\-]{10,}"),
    _d("google_api_key", "secret", r"\bAIza[0-9A-Za-z_\-]{35}"),
    _d("stripe_key", "secret", r"\b[rsp]k_(?:live|test)_[0-9A-Za-z]{16,}"),
    _d("jwt", "secret", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),
    _d("high_entropy", "secret", r"(?<![A-Za-z0-9+/_\-])[A-Za-z0-9+/_\-]{32,}={0,2}", looks_random),
    _d("email", "pii", r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b"),
    _d("iban", "pii", r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b", iban_valid),
    _d("credit_card", "pii", r"(?<!\d)\d(?:[ \-]?\d){12,18}(?!\d)", luhn_valid),
    _d("phone", "pii", r"(?<![\w+])(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{2,4}(?:[ .\-]\d{2,4}){1,4}(?![\w])", phone_valid),  # noqa: E501
)  # fmt: skip


_NATIONAL = re.compile(r"\d{3}[ .\-]\d{3}[ .\-]\d{4}|0\d{1,4}(?:[ .\-]\d{2,4}){2,4}")


def _phone_shaped(text: str) -> bool:
    # Without an international "+" or an area code in parentheses, only the common national
    # shapes count (555-123-4567, 020 7946 0958): digit groups alone are too often other numbers.
    return text.startswith(("+", "(")) or _NATIONAL.fullmatch(text) is not None


def scan(text: str, detectors: Iterable[Detector] = DETECTORS) -> list[Span]:
    """Every secret and personal datum in `text`, non-overlapping, in order of position."""
    spans: list[Span] = []
    taken: list[tuple[int, int]] = []
    for det in detectors:
        for m in det.pattern.finditer(text):
            value = m.group()
            if not det.valid(value) or (det.kind == "phone" and not _phone_shaped(value)):
                continue
            if any(m.start() < end and start < m.end() for start, end in taken):
                continue
            taken.append((m.start(), m.end()))
            spans.append(Span(det.kind, det.group, m.start(), m.end()))
    return sorted(spans, key=lambda s: s.start)


def marker(span: Span) -> str:
    """The default replacement: `[REDACTED:<kind>]`."""
    return f"[REDACTED:{span.kind}]"


def redact(text: str, spans: Iterable[Span], replace: Callable[[Span], str] = marker) -> str:
    """`text` with each span replaced by `replace(span)` (default `[REDACTED:<kind>]`)."""
    out: list[str] = []
    pos = 0
    for span in sorted(spans, key=lambda s: s.start):
        out += [text[pos : span.start], replace(span)]
        pos = span.end
    out.append(text[pos:])
    return "".join(out)


# Characters of the tokens a multi-token shape is made of: card and phone digit groups, IBAN
# groups, a private key's `-----BEGIN RSA PRIVATE KEY-----` header.
_RUN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-().") | {""}


def _token_start(text: str, end: int, floor: int) -> int:
    """Where the token (a run without whitespace) that ends at `end` starts."""
    while end > floor and not text[end - 1].isspace():
        end -= 1
    return end


def _run_start(text: str, cut: int, floor: int) -> int:
    """Where a multi-token shape that reaches `cut` could start: back over whitespace and whole
    tokens of run characters, and over a token before them that ends in run characters."""
    while True:
        end = cut
        while end > floor and text[end - 1].isspace():
            end -= 1
        start = end
        while start > floor and text[start - 1] in _RUN_CHARS and not text[start - 1].isspace():
            start -= 1
        if start == end:  # no run characters before the whitespace: the run starts at `cut`
            return cut
        if start > floor and not text[start - 1].isspace():
            # A token like `iban=GB82`: the run may start inside it. Hold the whole token, so
            # the detectors' look-behinds see the same characters they see in the whole text.
            return _token_start(text, start, floor)
        cut = start


class StreamRedactor:
    """Redacts a text that arrives in chunks. Not thread-safe: one per stream.

    `feed(chunk)` returns the text that is now safe to send. It holds back only what a secret
    or personal datum could still grow out of: the last token (a key's tail may be in the next
    chunk), the trailing run of tokens that a multi-token shape (a card or phone number, an
    IBAN, a key header) could continue — tokens of digits, capitals and `+-().` — and any
    detected span that reaches that point; never more than `max_hold` characters. Ordinary
    prose is therefore released a token behind the model, so the guard costs the stream's first
    text a token, not a fixed window. `finish()` returns the rest. `spans` collects every span
    found, with offsets into the whole (unredacted) stream.
    """

    def __init__(
        self,
        select: Callable[[Span], bool],
        replace: Callable[[Span], str] = marker,
        max_hold: int = 4096,
        detectors: tuple[Detector, ...] = DETECTORS,
    ):
        self._select = select  # which spans to replace in the output
        self._replace = replace
        self._max_hold = max_hold
        self._detectors = detectors
        self._buffer = ""
        self._offset = 0  # stream position of the buffer's first character
        self.spans: list[Span] = []

    def feed(self, chunk: str) -> str:
        """Add a chunk; return what can be released now (possibly empty)."""
        self._buffer += chunk
        spans = scan(self._buffer, self._detectors)
        cut = self._safe_cut(spans)
        return self._release(cut, spans)

    def finish(self) -> str:
        """End of stream: release (redacted) everything held back."""
        return self._release(len(self._buffer), scan(self._buffer, self._detectors))

    def _safe_cut(self, spans: list[Span]) -> int:
        buffer = self._buffer
        floor = max(0, len(buffer) - self._max_hold)
        cut = _token_start(buffer, len(buffer), floor)  # the last token may still grow
        if buffer[cut : cut + 1] in _RUN_CHARS:  # ... and continue a run of tokens before it
            cut = _run_start(buffer, cut, floor)
        for span in spans:  # never split a span that may still grow
            if span.start < cut <= span.end:
                cut = span.start
        return max(cut, floor)

    def _release(self, cut: int, spans: list[Span]) -> str:
        done = [s for s in spans if s.end <= cut]
        self.spans += [
            Span(s.kind, s.group, s.start + self._offset, s.end + self._offset) for s in done
        ]
        out = redact(self._buffer[:cut], [s for s in done if self._select(s)], self._replace)
        self._buffer = self._buffer[cut:]
        self._offset += cut
        return out
