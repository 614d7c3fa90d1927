"""One generation call as the gateway tracks it, from admission to the ledger row.

`Call` is mutable on purpose: the relay fills in the first-token time and the upstream's usage
as the answer streams past, and `finish` settles the reservation and records the row exactly
once, whether the call succeeded, failed or the client went away.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from strata.gateway.principal import Principal
from strata.guard import Finding, GuardVerdict

if TYPE_CHECKING:
    from strata.gateway.request_logs.transcript import Transcript
    from strata.telemetry.otel import RequestTrace


@dataclass
class TokenUsage:
    """Token counts as the upstream reported them (or as estimated when it could not)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reported: bool = False  # False: estimated (the stream ended before the usage chunk)
    replica_seconds: float | None = None  # a strata engine's `strata_replica_seconds`

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_json(cls, usage: Any) -> TokenUsage | None:
        """From an OpenAI `usage` object; None when it is absent or malformed."""
        if not isinstance(usage, dict):
            return None
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return None
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
        return cls(prompt, completion, cached if isinstance(cached, int) else 0, True,
                   _replica_seconds(usage.get("strata_replica_seconds")))  # fmt: skip


def _replica_seconds(value: Any) -> float | None:
    """The engine's replica seconds when they are a finite, non-negative number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


@dataclass
class Call:
    """What the gateway knows about one request while it is in flight."""

    request_id: str
    principal: Principal
    model: str  # the served model name (aliases resolved)
    prompt_estimate: int
    max_tokens: int  # reserved for the completion and sent upstream
    started: float = field(default_factory=time.perf_counter)
    upstream: str = ""
    first_token_at: float | None = None
    chunks: int = 0  # content-bearing stream events relayed
    usage: TokenUsage | None = None
    status: int = 200
    error_code: str | None = None
    route: str = "/v1/chat/completions"
    guard: GuardVerdict | None = None
    output_findings: list[Finding] = field(default_factory=list)  # the guard, on the answer
    trace: RequestTrace | None = None  # its OpenTelemetry spans, when traced
    transcript: Transcript | None = None  # prompt and answer, when its tenant is logged

    def note_chunk(self) -> None:
        """The upstream sent an event with text (counted for the token estimate)."""
        self.chunks += 1

    def note_relayed_text(self) -> None:
        """Text went out to the client; the first time is the call's TTFT. The answer guard
        may hold text back, so this can come many upstream events later."""
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def note_body(self, body: bytes) -> None:
        """Take the usage from a complete (non-streamed) JSON answer."""
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if isinstance(parsed, dict):
            self.usage = TokenUsage.from_json(parsed.get("usage"))

    def final_usage(self) -> TokenUsage:
        """The reported usage, else an estimate: prompt estimate plus one token per chunk."""
        if self.usage is not None:
            return self.usage
        return TokenUsage(self.prompt_estimate, min(self.chunks, self.max_tokens))

    @property
    def ttft_ms(self) -> float | None:
        if self.first_token_at is None:
            return None
        return (self.first_token_at - self.started) * 1000

    @property
    def duration_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000
