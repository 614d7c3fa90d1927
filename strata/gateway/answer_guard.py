"""The guard on the way out: secrets, personal data and the deployment's canary in answers.

One `AnswerGuard` per response, with one stateful output filter per choice. Streamed events
are rewritten text by text (the filter holds back a short tail so a secret split across
chunks is still caught); a `block` finding (the canary, by default) withholds the rest of the
answer and ends it with a `content_policy` error. Only JSON is touched, and only when the
guard is on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from strata.errors import ContentPolicyError
from strata.guard import OutputFilter

WITHHELD = (
    "The answer was withheld: it contained text this deployment's output policy blocks "
    "(the system-prompt canary or a blocked secret)."
)


class AnswerGuard:
    """Filters one response's answer texts; `findings` collects what the filters found."""

    def __init__(self, new_filter: Callable[[], OutputFilter]) -> None:
        self._new_filter = new_filter
        self._filters: dict[int, OutputFilter] = {}

    @property
    def findings(self) -> list[Any]:
        return [f for flt in self._filters.values() for f in flt.findings]

    def body(self, body: bytes) -> bytes:
        """A complete answer, filtered; raises `ContentPolicyError` if it is blocked."""
        answer = _json(body)
        if answer is None:
            return body
        for choice in answer.get("choices") or []:
            self._whole(choice)
        return orjson.dumps(answer)

    def event(self, payload: bytes) -> bytes:
        """One streamed event, filtered; raises `ContentPolicyError` once the answer is
        blocked (what came before it has already been sent)."""
        event = _json(payload)
        if event is None or not event.get("choices"):
            return payload
        for choice in event["choices"]:
            self._part(choice)
        return orjson.dumps(event)

    def _whole(self, choice: dict[str, Any]) -> None:
        holder, key = _text_slot(choice)
        if holder is None:
            return
        flt = self._filter(choice)
        holder[key] = flt.feed(holder[key]) + flt.finish()
        _raise_if_blocked(flt)

    def _part(self, choice: dict[str, Any]) -> None:
        holder, key = _text_slot(choice)
        flt = self._filter(choice)
        text = flt.feed(holder[key]) if holder is not None else ""
        if choice.get("finish_reason") is not None:
            text += flt.finish()
        _raise_if_blocked(flt)
        if holder is not None:
            holder[key] = text
        elif text:  # the held-back tail arrives with a chunk that carried no text
            choice.setdefault("delta", {})["content"] = text

    def _filter(self, choice: dict[str, Any]) -> OutputFilter:
        index = choice.get("index", 0)
        key = index if isinstance(index, int) else 0
        if key not in self._filters:
            self._filters[key] = self._new_filter()
        return self._filters[key]


def _text_slot(choice: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """Where a choice keeps its text: message.content, delta.content or text."""
    for name in ("message", "delta"):
        part = choice.get(name)
        if isinstance(part, dict) and isinstance(part.get("content"), str):
            return part, "content"
    if isinstance(choice.get("text"), str):
        return choice, "text"
    return None, ""


def _raise_if_blocked(flt: OutputFilter) -> None:
    if flt.blocked:
        raise ContentPolicyError(WITHHELD)


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
