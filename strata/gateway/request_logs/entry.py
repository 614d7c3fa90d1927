"""A finished call as the request log stores it, and the redaction it gets before it is written.

`LogEntry` is made on the hot path from the call and its `Transcript` (no copying of text, no
scanning). `LogRedactor` runs when the writer forms a batch: every secret, personal datum and
the deployment's canary the guard knows is replaced by `[REDACTED:<kind>]`, whatever the
tenant's guard policy (and with the guard off): a log never stores them raw. Texts are cut at
`request_logs.max_text_chars` after redaction, so a secret is never half-kept by the cut.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from strata.gateway.ledger import row_id
from strata.gateway.request_logs.transcript import REDACTION_MARGIN, Message
from strata.guard import Canary
from strata.guard.pii import DETECTORS, Detector, redact, scan

COLUMNS = (
    "id", "request_id", "created_at", "tenant", "user_name", "key_id", "end_user", "session_id",
    "route", "model", "stream", "messages", "response", "truncated", "prompt_tokens",
    "completion_tokens", "cost_usd", "ttft_ms", "duration_ms", "status", "error_code",
)  # fmt: skip
TRUNCATED = "[…truncated]"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEntry:
    """One finished call of a logged tenant, texts still raw. `at` is timezone-aware (UTC)."""

    request_id: str
    at: datetime
    tenant: str
    user: str
    key_id: str
    end_user: str | None
    session: str | None
    route: str
    model: str
    stream: bool
    messages: tuple[Message, ...]
    answer: str
    truncated: bool  # the answer grew past what the transcript keeps
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    ttft_ms: float | None
    duration_ms: float
    status: int
    error_code: str | None


class LogRedactor:
    """The guard's detectors (secrets, PII, and the canary when there is one), all redacted."""

    def __init__(self, canary: Canary | None = None) -> None:
        self._detectors: tuple[Detector, ...] = DETECTORS
        if canary is not None:
            self._detectors = (Detector("canary", "canary", canary.pattern()), *DETECTORS)

    def __call__(self, text: str) -> str:
        return redact(text, scan(text, self._detectors))


class RowMaker:
    """Entries → rows in `COLUMNS` order: ids fixed, texts redacted, cut and made storable."""

    def __init__(self, redactor: LogRedactor, max_chars: int) -> None:
        self._redact = redactor
        self._max_chars = max_chars

    def row(self, e: LogEntry) -> tuple[Any, ...]:
        messages, cut_prompt = self._messages(e.messages)
        answer, cut_answer = self.text(e.answer, self._max_chars)
        return (
            row_id(e.at), e.request_id, e.at, e.tenant, e.user, e.key_id,
            e.end_user and storable(e.end_user), e.session,
            e.route, e.model, e.stream, Jsonb(messages), answer,
            e.truncated or cut_prompt or cut_answer, e.prompt_tokens, e.completion_tokens,
            e.cost_usd, e.ttft_ms, e.duration_ms, e.status, e.error_code,
        )  # fmt: skip

    def text(self, raw: str, most: int) -> tuple[str, bool]:
        """(`raw` redacted and cut to `most` characters, whether it was cut)."""
        clean = storable(self._redact(raw[: most + REDACTION_MARGIN]))
        if len(clean) <= most:
            return clean, False
        return clean[:most] + TRUNCATED, True

    def _messages(self, messages: Iterable[Message]) -> tuple[list[dict[str, str]], bool]:
        """Each message redacted; the character budget goes to the newest messages first
        (the turn being answered), older ones keep what is left."""
        left, cut, kept = self._max_chars, False, []
        for role, raw in reversed(tuple(messages)):
            text, was_cut = self.text(raw, left)
            left -= min(len(text), left)
            cut = cut or was_cut
            kept.append({"role": role, "content": text})
        return kept[::-1], cut


def storable(text: str) -> str:
    """PostgreSQL text and jsonb hold no NUL character."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
