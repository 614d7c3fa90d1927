"""What one logged call said, captured on the hot path: its prompt and the answer as relayed.

A `Transcript` exists only for a call of an opted-in tenant. It keeps raw text, bounded:
redaction is the writer's job, off the request path (`strata.gateway.request_logs.entry`).
The prompt is the caller's messages as the guard forwarded them, before any retrieved
documents were added; the answer is the text the client received (after the answer guard),
per choice, without tool calls.

Conventions (documented in the README): the session is the `x-strata-session` header, the
end user is the OpenAI `user` field; the strata user is the key's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from strata.errors import InvalidRequestError
from strata.gateway.body import GenerationBody

SESSION_HEADER = "x-strata-session"
_SESSION = re.compile(r"[A-Za-z0-9._:@/=+\-]{1,128}")
# Text kept beyond the stored limit, so that a secret straddling the cut is still redacted
# whole before the cut is made (the longest shapes the guard finds are PEM keys, ~3 KB).
REDACTION_MARGIN = 4096

Message = tuple[str, str]  # (role, text); role "prompt" for /v1/completions


def session_id(headers: Mapping[str, str]) -> str | None:
    """The caller's session id from `x-strata-session`; a 400 naming the header if malformed."""
    value = headers.get(SESSION_HEADER)
    if value is None:
        return None
    if _SESSION.fullmatch(value) is None:
        raise InvalidRequestError(
            f"{SESSION_HEADER}: must be 1-128 characters of letters, digits and . _ : @ / = + -.",
            code="invalid_session",
            param=SESSION_HEADER,
        )
    return value


def prompt_messages(body: GenerationBody) -> tuple[Message, ...]:
    """The body's prompt texts per message: (role, text parts joined by newlines)."""
    if body.endpoint == "completions":
        return tuple(("prompt", text) for _, text in body.texts)
    messages: list[dict[str, Any]] = body.raw["messages"]
    parts: dict[int, list[str]] = {}
    for path, text in body.texts:
        _, index, name, *_ = path.split(".")
        if name == "content":  # names are left out: they are often a person's
            parts.setdefault(int(index), []).append(text)
    return tuple((str(m["role"]), "\n".join(parts.get(i, ()))) for i, m in enumerate(messages))


@dataclass
class Transcript:
    """One call's prompt and answer, raw. `note_body`/`note_event` cost one JSON parse each;
    the answer stops growing at `limit` characters (plus the redaction margin)."""

    messages: tuple[Message, ...]
    session: str | None
    end_user: str | None
    stream: bool
    limit: int
    truncated: bool = False
    _choices: dict[int, list[str]] = field(default_factory=dict)
    _chars: int = 0

    @classmethod
    def of(cls, body: GenerationBody, session: str | None, limit: int) -> Transcript:
        user = body.raw.get("user")
        end_user = user if isinstance(user, str) else None
        return cls(prompt_messages(body), session, end_user, body.stream, limit)

    def note_body(self, body: bytes) -> None:
        """A complete (non-streamed) answer: `choices[].message.content` or `choices[].text`."""
        self._note(body, "message")

    def note_event(self, payload: bytes) -> None:
        """One streamed event: `choices[].delta.content` or `choices[].text`."""
        self._note(payload, "delta")

    @property
    def answer(self) -> str:
        """Every choice's text, in choice order, separated by a blank line."""
        return "\n\n".join("".join(self._choices[i]) for i in sorted(self._choices))

    def _note(self, raw: bytes, holder: str) -> None:
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        choices = parsed.get("choices") if isinstance(parsed, dict) else None
        for choice in choices if isinstance(choices, list) else ():
            if isinstance(choice, dict):
                self._add(choice.get("index", 0), _choice_text(choice, holder))

    def _add(self, index: object, text: str | None) -> None:
        if not text or not isinstance(index, int):
            return
        room = self.limit + REDACTION_MARGIN - self._chars
        if len(text) > room:
            self.truncated = True
            text = text[: max(room, 0)]
        self._chars += len(text)
        self._choices.setdefault(index, []).append(text)


def _choice_text(choice: dict[str, Any], holder: str) -> str | None:
    text = choice.get("text")
    inner = choice.get(holder)
    if text is None and isinstance(inner, dict):
        text = inner.get("content")
    return text if isinstance(text, str) else None
